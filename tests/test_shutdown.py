"""Ordered shutdown of a whole engine: listeners stop first, then delivery (a send in flight is
waited out), then retention, then the store; every outcome reached is recorded.

The engine runs on the real reactor with a real store and real sockets; its delivery worker
runs on a Clock that the test never advances, so a worker that slept during the stop (the 5 s
pause after "store writer is stopping") would keep the stop from finishing.
"""

from __future__ import annotations

import time

import pytest_twisted
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from engine.app import Switchboard
from engine.components import load_config
from engine.delivery.outcome import Outcome
from engine.destinations.file import FileDestination
from engine.lifecycle import OrderedMultiService

from .engine_harness import in_thread, send_all, start_engine, statuses, write_config
from .peers import wait_for

CONFIG = """
listeners:
  - {name: in, mllp: "tcp:0:interface=127.0.0.1"}
routes:
  - {match: {type: ADT}, to: [adt]}
"""


class HeldSender:
    """A sender whose sends stay in flight until the test settles them."""

    state = "up"

    def __init__(self):
        self.sent: list[str] = []
        self.in_flight: list[Deferred] = []
        self.stopped = 0

    def start(self):
        pass

    def stop(self):
        self.stopped += 1
        return succeed(None)

    def send(self, delivery):
        self.sent.append(delivery.control_id)
        d = Deferred()
        self.in_flight.append(d)
        return d


def adt(n: int) -> bytes:
    return f"MSH|^~\\&|A|B|C|D|2024||ADT^A01|M{n}|P|2.5\rPID|1\r".encode()


def engine_with_held_sender(tmp_path, monkeypatch):
    sender = HeldSender()
    monkeypatch.setattr(FileDestination, "sender", lambda self, ctx: sender)
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "adt.yaml").write_text(
        "name: adt\ndestinations:\n  - {name: out, file: out}\n"
    )
    sb = start_engine(tmp_path, CONFIG, channels=())
    clock = Clock()
    clock.advance(time.time())
    for worker in sb.delivery.workers.values():
        worker.clock = clock
    return sb, sender, clock


@pytest_twisted.inlineCallbacks
def test_stop_waits_out_the_send_in_flight_and_records_its_outcome(tmp_path, monkeypatch):
    sb, sender, clock = engine_with_held_sender(tmp_path, monkeypatch)
    (worker,) = sb.delivery.workers.values()
    acks = yield in_thread(send_all, sb.port_of("in"), [adt(1)])
    assert b"MSA|AA|M1" in acks[0]
    assert (yield wait_for(lambda: sender.sent == ["M1"]))

    stopped = sb.stopService()
    # the listeners stop first; then delivery is asked to stop with the send still in flight
    assert (yield wait_for(lambda: worker._stopping))
    assert not sb.listeners["in"].running and sb.writer._thread.is_alive()
    assert not stopped.called
    sender.in_flight[0].callback(Outcome.ok("AA", "MSA|AA|M1"))
    # promptly: the Clock never moves, so a worker that slept would hold the stop up
    assert (yield wait_for(lambda: stopped.called))
    assert [c for c in clock.getDelayedCalls() if c.active()] == []
    assert not sb.writer._thread.is_alive()
    assert statuses(sb) == ["delivered"]
    assert sender.stopped == 1


def test_the_engine_tree_stops_inputs_first_and_the_store_last(tmp_path):
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "adt.yaml").write_text("name: adt\n")
    cfg = load_config(write_config(tmp_path, CONFIG + "admin: {listen: 'tcp:0'}\n", channels=()))
    sb = Switchboard(cfg, None)
    # OrderedMultiService stops these in reverse, one after the other
    assert [svc.name for svc in sb] == ["store", "retention", "delivery", "listeners", "admin"]
    assert [svc.name for svc in sb.listening] == ["in"]


class Recording(Service):
    def __init__(self, name, log):
        self.setName(name)
        self.log = log
        self.done = Deferred()

    def stopService(self):
        super().stopService()
        self.log.append(self.name)
        if self.name == "broken":
            raise RuntimeError("cannot stop")
        return self.done


def test_ordered_children_stop_last_first_each_after_the_one_before():
    log: list[str] = []
    parent = OrderedMultiService()
    a, broken, c = Recording("a", log), Recording("broken", log), Recording("c", log)
    for svc in (a, broken, c):
        svc.setServiceParent(parent)
    parent.startService()
    stopped = parent.stopService()
    assert log == ["c"]  # a waits for c
    c.done.callback(None)
    assert log == ["c", "broken", "a"]  # a failing stop does not keep the others running
    assert not stopped.called
    a.done.callback(None)
    assert stopped.called and not parent.running
