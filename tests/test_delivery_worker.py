"""The delivery worker on a real store with a scripted sender and a Clock: order, retries,
poison heads both ways, pause, operator actions, recovery of in-flight rows."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import select
from twisted.internet.defer import succeed
from twisted.internet.task import Clock

from engine.delivery.outcome import Outcome
from engine.delivery.queue import QueueStore
from engine.delivery.worker import DestinationWorker
from engine.metrics import Metrics
from engine.store.schema import deliveries, messages


class SyncWriter:
    """Runs outcome statements at once in their own transaction (the real writer batches)."""

    def __init__(self, engine):
        self.engine = engine

    def execute(self, ops):
        with self.engine.begin() as conn:
            for stmt, params in ops:
                conn.execute(stmt, params)
        return succeed(None)


class ScriptedSender:
    state = "up"

    def __init__(self, script=None):
        self.sent: list[str] = []
        self.script = dict(script or {})  # control id -> list of outcomes, consumed in order

    def start(self):
        pass

    def stop(self):
        return succeed(None)

    def send(self, delivery):
        self.sent.append(delivery.control_id)
        todo = self.script.get(delivery.control_id)
        return succeed(todo.pop(0) if todo else Outcome.ok("AA", "MSA|AA"))


def queue_rows(engine, n: int, at: float = 1000.0) -> None:
    with engine.begin() as conn:
        for i in range(1, n + 1):
            conn.execute(messages.insert().values(
                id=i, received_at=at, listener="in", control_id=f"M{i}", status="routed",
                size=1, raw=b"x"))  # fmt: skip
            conn.execute(deliveries.insert().values(
                id=i, message_id=i, channel="ch", destination="out", status="pending",
                content_type="x-application/hl7-v2+er7",
                payload=f"MSH|^~\\&|A|B|C|D|2024||ADT^A01|M{i}|P|2.5\r".encode(),
                created_at=at))  # fmt: skip


def states(engine) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(select(deliveries.c.id, deliveries.c.status).order_by(deliveries.c.id))
        return {f"M{r.id}": r.status for r in rows}


@pytest.fixture
def setup(store_engine):
    clock = Clock()
    clock.advance(1000.0)

    def make(script=None, **config):
        sender = ScriptedSender(script)
        cfg = {"name": "out", "retry": {"max_attempts": 3, "backoff": 2.0, "max_backoff": 60.0},
               **config}  # fmt: skip
        worker = DestinationWorker(
            "ch", cfg, sender, queue=QueueStore(store_engine, "node-a"),
            writer=SyncWriter(store_engine), clock=clock, metrics=Metrics(),
            run_db=lambda fn, *a: succeed(fn(*a)), rand=random.Random(1),
        )  # fmt: skip
        worker.start()
        return worker, sender

    return store_engine, clock, make


def test_fifo_in_order(setup):
    engine, _clock, make = setup
    queue_rows(engine, 5)
    worker, sender = make()
    assert sender.sent == ["M1", "M2", "M3", "M4", "M5"]
    assert set(states(engine).values()) == {"delivered"}
    worker.stop()


def test_order_holds_under_retries_with_backoff_on_the_clock(setup):
    engine, clock, make = setup
    queue_rows(engine, 3)
    fail = Outcome.retry("no ACK within 30 s")
    worker, sender = make({"M2": [fail, fail]})
    assert sender.sent == ["M1", "M2"]  # M3 waits behind M2
    assert states(engine)["M2"] == "retry"
    clock.advance(1.5)
    assert sender.sent == ["M1", "M2"]  # backoff ~2 s (jitter +-20%) not over yet
    clock.advance(1.0)
    assert sender.sent == ["M1", "M2", "M2"]
    clock.advance(5.0)  # second backoff ~4 s
    assert sender.sent == ["M1", "M2", "M2", "M2", "M3"]
    assert set(states(engine).values()) == {"delivered"}
    with engine.connect() as conn:
        attempts = conn.execute(select(deliveries.c.attempts).where(deliveries.c.id == 2))
        assert attempts.scalar() == 3
    worker.stop()


def test_poison_head_dead_letter_moves_on(setup):
    engine, _clock, make = setup
    queue_rows(engine, 3)
    worker, sender = make({"M2": [Outcome.dead("AR from peer: unknown patient", "AR")]})
    assert sender.sent == ["M1", "M2", "M3"]
    assert states(engine) == {"M1": "delivered", "M2": "dead", "M3": "delivered"}
    with engine.connect() as conn:
        row = conn.execute(select(deliveries).where(deliveries.c.id == 2)).mappings().one()
    assert (row["response_code"], row["last_error"]) == ("AR", "AR from peer: unknown patient")
    worker.stop()


def test_retries_spent_then_dead(setup):
    engine, clock, make = setup
    queue_rows(engine, 2)
    worker, sender = make({"M1": [Outcome.retry("refused")] * 3})
    clock.advance(3)
    clock.advance(6)
    assert states(engine) == {"M1": "dead", "M2": "delivered"}
    assert sender.sent == ["M1", "M1", "M1", "M2"]
    worker.stop()


def test_poison_head_block_holds_until_an_operator_skips_or_replays(setup):
    engine, clock, make = setup
    queue_rows(engine, 3)
    worker, sender = make({"M2": [Outcome.dead("AR", "AR")]}, on_failure="block")
    assert sender.sent == ["M1", "M2"]
    assert states(engine)["M2"] == "held" and states(engine)["M3"] != "delivered"
    clock.advance(10)
    assert sender.sent == ["M1", "M2"]  # held: nothing moves
    q = QueueStore(engine, "operator")
    assert q.replay(ids=[2], status="held", now=clock.seconds()) == 1
    worker.wake()
    assert sender.sent == ["M1", "M2", "M2", "M3"]  # replayed: resent in its place, then M3
    assert set(states(engine).values()) == {"delivered"}
    worker.stop()


def test_skip_head(setup):
    engine, clock, make = setup
    queue_rows(engine, 2)
    worker, _sender = make({"M1": [Outcome.dead("AR", "AR")]}, on_failure="block")
    assert QueueStore(engine, "op").skip_head("ch", "out", clock.seconds()) == 1
    worker.wake()
    assert states(engine) == {"M1": "skipped", "M2": "delivered"}
    worker.stop()


def test_pause_and_resume(setup):
    engine, clock, make = setup
    q = QueueStore(engine, "op")
    q.set_paused("ch", "out", True)
    queue_rows(engine, 2)
    worker, sender = make()
    clock.advance(5)
    assert sender.sent == []
    q.set_paused("ch", "out", False)
    clock.advance(1)
    assert sender.sent == ["M1", "M2"]
    worker.stop()


def test_in_flight_rows_of_a_dead_process_go_back_to_pending(setup):
    engine, _clock, make = setup
    queue_rows(engine, 2)
    with engine.begin() as conn:
        conn.execute(deliveries.update().values(status="in_flight", claimed_by="old-process"))
    worker, sender = make()
    assert sender.sent == ["M1", "M2"]
    assert set(states(engine).values()) == {"delivered"}
    worker.stop()


def test_replay_dead_by_filter(setup):
    engine, clock, make = setup
    queue_rows(engine, 3)
    worker, sender = make({"M1": [Outcome.dead("AR", "AR")], "M3": [Outcome.dead("AR", "AR")]})
    assert states(engine) == {"M1": "dead", "M2": "delivered", "M3": "dead"}
    assert QueueStore(engine, "op").replay(destination="out", now=clock.seconds()) == 2
    worker.wake()
    assert sender.sent[-2:] == ["M1", "M3"]
    assert set(states(engine).values()) == {"delivered"}
    worker.stop()
