"""The delivery worker on a real store with a scripted sender and a Clock: order, retries,
poison heads both ways, pause, operator actions, recovery of in-flight rows."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import select
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from engine.delivery.outcome import Outcome
from engine.delivery.queue import QueueStore
from engine.delivery.worker import DestinationWorker
from engine.metrics import Metrics
from engine.store.schema import deliveries, destination_state, messages

from . import settings


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

    def make(script=None, sender=None, writer=None, **config):
        sender = sender or ScriptedSender(script)
        cfg = {
            "name": "out",
            "file": "out",
            "retry": {"max_attempts": 3, "backoff": 2.0, "max_backoff": 60.0},
            **config,
        }
        worker = DestinationWorker(
            "ch", settings.destination("file", **cfg), sender,
            queue=QueueStore(store_engine, "node-a"),
            writer=writer or SyncWriter(store_engine), clock=clock, metrics=Metrics(),
            run_db=lambda fn, *a: succeed(fn(*a)), rand=random.Random(1),
        )  # fmt: skip
        worker.startService()
        return worker, sender

    return store_engine, clock, make


def test_fifo_in_order(setup):
    engine, _clock, make = setup
    queue_rows(engine, 5)
    worker, sender = make()
    assert sender.sent == ["M1", "M2", "M3", "M4", "M5"]
    assert set(states(engine).values()) == {"delivered"}
    worker.stopService()


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
    worker.stopService()


def test_poison_head_dead_letter_moves_on(setup):
    engine, _clock, make = setup
    queue_rows(engine, 3)
    worker, sender = make({"M2": [Outcome.dead("AR from peer: unknown patient", "AR")]})
    assert sender.sent == ["M1", "M2", "M3"]
    assert states(engine) == {"M1": "delivered", "M2": "dead", "M3": "delivered"}
    with engine.connect() as conn:
        row = conn.execute(select(deliveries).where(deliveries.c.id == 2)).mappings().one()
    assert (row["response_code"], row["last_error"]) == ("AR", "AR from peer: unknown patient")
    worker.stopService()


def test_retries_spent_then_dead(setup):
    engine, clock, make = setup
    queue_rows(engine, 2)
    worker, sender = make({"M1": [Outcome.retry("refused")] * 3})
    clock.advance(3)
    clock.advance(6)
    assert states(engine) == {"M1": "dead", "M2": "delivered"}
    assert sender.sent == ["M1", "M1", "M1", "M2"]
    worker.stopService()


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
    worker.stopService()


def test_skip_head(setup):
    engine, clock, make = setup
    queue_rows(engine, 2)
    worker, _sender = make({"M1": [Outcome.dead("AR", "AR")]}, on_failure="block")
    assert QueueStore(engine, "op").skip_head("ch", "out", clock.seconds()) == 1
    worker.wake()
    assert states(engine) == {"M1": "skipped", "M2": "delivered"}
    worker.stopService()


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
    worker.stopService()


def test_in_flight_rows_of_a_dead_process_go_back_to_pending(setup):
    engine, _clock, make = setup
    queue_rows(engine, 2)
    with engine.begin() as conn:
        conn.execute(deliveries.update().values(status="in_flight", claimed_by="old-process"))
    worker, sender = make()
    assert sender.sent == ["M1", "M2"]
    assert set(states(engine).values()) == {"delivered"}
    worker.stopService()


def test_replay_dead_by_filter(setup):
    engine, clock, make = setup
    queue_rows(engine, 3)
    worker, sender = make({"M1": [Outcome.dead("AR", "AR")], "M3": [Outcome.dead("AR", "AR")]})
    assert states(engine) == {"M1": "dead", "M2": "delivered", "M3": "dead"}
    assert QueueStore(engine, "op").replay(destination="out", now=clock.seconds()) == 2
    worker.wake()
    assert sender.sent[-2:] == ["M1", "M3"]
    assert set(states(engine).values()) == {"delivered"}
    worker.stopService()


def opened(states: dict[str, str]) -> dict[str, str]:
    """Pending, or in flight (PostgreSQL claims mark it; the next lease holder requeues it)."""
    return {k: "open" if v in ("pending", "in_flight") else v for k, v in states.items()}


class HeldSender(ScriptedSender):
    """Each send stays in flight until the test settles it; stop() settles the one in flight
    as a retry, as the real senders do."""

    def __init__(self):
        super().__init__()
        self.in_flight: list[Deferred] = []
        self.stops = 0

    def send(self, delivery):
        self.sent.append(delivery.control_id)
        d = Deferred()
        self.in_flight.append(d)
        return d

    def stop(self):
        self.stops += 1
        for d in self.in_flight:
            if not d.called:
                d.callback(Outcome.retry("sender stopped before the ACK"))
        return succeed(None)


class StoppingWriter(SyncWriter):
    """The store writer once it is stopping (the old shutdown let this happen)."""

    def execute(self, ops):
        raise RuntimeError("store writer is stopping")


def test_stop_waits_for_the_send_in_flight_and_records_it(setup):
    engine, clock, make = setup
    queue_rows(engine, 3)
    sender = HeldSender()
    worker, _ = make(sender=sender)
    sender.in_flight[0].callback(Outcome.ok("AA", "MSA|AA|M1"))
    assert sender.sent == ["M1", "M2"]
    stopped = worker.stopService()
    assert not stopped.called  # M2 is in flight
    sender.in_flight[1].callback(Outcome.ok("AA", "MSA|AA|M2"))
    assert stopped.called  # at once: the Clock never moved
    assert opened(states(engine)) == {"M1": "delivered", "M2": "delivered", "M3": "open"}
    assert sender.sent == ["M1", "M2"] and sender.stops == 1
    assert [c for c in clock.getDelayedCalls() if c.active()] == []


def test_stop_leaves_a_send_unanswered_after_stop_timeout_for_the_restart(setup):
    engine, clock, make = setup
    queue_rows(engine, 3)
    sender = HeldSender()
    worker, _ = make(sender=sender)
    worker.stop_timeout = 10.0
    sender.in_flight[0].callback(Outcome.ok("AA", "MSA|AA|M1"))
    stopped = worker.stopService()
    clock.advance(9.9)
    assert not stopped.called
    clock.advance(0.1)
    assert stopped.called
    # M1's outcome is recorded; M2 was sent but never answered: not an attempt, still open,
    # so the next start sends it again (at least once)
    assert opened(states(engine)) == {"M1": "delivered", "M2": "open", "M3": "open"}
    with engine.connect() as conn:
        assert conn.execute(select(deliveries.c.attempts).where(deliveries.c.id == 2)).scalar() == 0
    assert sender.stops == 1


def test_a_stopping_worker_never_sleeps(setup):
    engine, clock, make = setup
    queue_rows(engine, 1)
    sender = HeldSender()
    worker, _ = make(sender=sender, writer=StoppingWriter(engine))
    stopped = worker.stopService()
    sender.in_flight[0].callback(Outcome.ok("AA", "MSA|AA|M1"))
    # the outcome cannot be recorded: no 5 s pause before trying again, the worker ends
    assert stopped.called
    assert [c for c in clock.getDelayedCalls() if c.active()] == []


def test_an_idle_sqlite_worker_writes_nothing_for_a_minute(tmp_path):
    """Lease renewals every second grew the WAL by ~27 KB/s with no traffic: on SQLite (one
    node) the lease lives in memory, and an idle minute of polls reads only."""
    import sqlite3

    from engine.store import migrations
    from engine.store.db import create_store_engine

    path = tmp_path / "store.db"
    engine = create_store_engine(f"sqlite:///{path}")
    migrations.upgrade(engine)
    queue_rows(engine, 2)
    clock = Clock()
    clock.advance(1000.0)
    calls: list[str] = []

    def run_db(fn, *args):
        calls.append(fn.__name__)
        return succeed(fn(*args))

    worker = DestinationWorker(
        "ch", settings.destination("file", name="out", file="out"), ScriptedSender(),
        queue=QueueStore(engine, "node-a"),
        writer=SyncWriter(engine), clock=clock, run_db=run_db,
    )  # fmt: skip
    worker.startService()
    assert set(states(engine).values()) == {"delivered"}
    clock.advance(1.0)  # the first idle poll
    observer = sqlite3.connect(path)  # data_version moves when another connection commits
    version = observer.execute("PRAGMA data_version").fetchone()
    wal = path.with_name("store.db-wal").stat().st_size
    polls = calls.count("claim")
    for _ in range(61):
        clock.advance(1.0)
    assert calls.count("claim") - polls >= 60  # it did poll every second
    assert calls.count("lease") >= 60  # and looked at the pause state every second
    assert path.with_name("store.db-wal").stat().st_size == wal
    assert observer.execute("PRAGMA data_version").fetchone() == version  # no write at all
    observer.close()
    worker.stopService()
    engine.dispose()


def test_an_idle_worker_renews_its_lease_only_where_nodes_share_the_store(setup):
    """PostgreSQL (several nodes): the lease is renewed while idle, so the others wait; SQLite
    (one node) keeps it in memory and writes no expiry."""
    engine, clock, make = setup
    worker, _ = make()

    def lease_until():
        with engine.connect() as conn:
            return conn.execute(select(destination_state.c.lease_until)).scalar()

    first = lease_until()
    clock.advance(30.0)
    if engine.dialect.name == "sqlite":
        assert first is None and lease_until() is None
    else:
        assert lease_until() >= first + 29.0
    worker.stopService()
