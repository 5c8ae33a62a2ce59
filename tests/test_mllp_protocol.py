"""The MLLP listener protocol with a controllable writer: ACK order, store failure, limits."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from engine.intake import Intake
from engine.metrics import Metrics
from engine.mllp.framing import frame
from engine.pipeline import Pipeline
from engine.router import Router
from engine.sources.mllp import MLLPServerFactory
from engine.store.writer import RowResult

from . import settings

LISTENER = settings.listener(name="lab-in", ack="on_receipt", duplicate_window=3600.0,
                             max_connections=2)  # fmt: skip


def msg(n: int, extra: str = "") -> bytes:
    return f"MSH|^~\\&|SND|SF|RCV|RF|2024||ADT^A01|C{n}|P|2.5{extra}\rPID|1\r".encode()


class ManualWriter:
    """Each write waits until the test commits (or fails) it."""

    def __init__(self):
        self.requests: list[tuple[list[dict], Deferred]] = []
        self.next_id = 1

    def submit(self, rows, windows=None, file=None):
        d = Deferred()
        self.requests.append((rows, d))
        return d

    def submit_then(self, rows, windows, done, file=None):
        d = self.submit(rows, windows, file)
        d.addBoth(done)

    def commit(self, i: int) -> None:
        rows, d = self.requests[i]
        results = []
        for _ in rows:
            results.append(RowResult(self.next_id))
            self.next_id += 1
        d.callback(results)

    def fail(self, i: int, exc: Exception) -> None:
        self.requests[i][1].errback(Failure(exc))


def setup(listener=LISTENER):
    clock = Clock()
    metrics = Metrics()
    writer = ManualWriter()
    pipeline = Pipeline(Router([settings.route(to=["all"])]))
    ctx = settings.context(writer=writer, pipeline=lambda: pipeline, metrics=metrics, clock=clock)
    intake = Intake(listener, ctx)
    factory = MLLPServerFactory(listener, intake, ctx)
    return factory, writer, metrics


def connect(factory):
    from twisted.internet.address import IPv4Address

    proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    if proto is None:
        return None, None
    t = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    proto.makeConnection(t)
    return proto, t


def acks(t: StringTransport) -> list[str]:
    data = t.value()
    out = []
    for chunk in data.split(b"\x1c\x0d"):
        if chunk:
            assert chunk[:1] == b"\x0b"
            out.append(chunk[1:].decode().split("\r")[1])
    return out


def test_no_ack_before_commit_and_acks_in_frame_order():  # cases 5, 39
    factory, writer, _ = setup()
    proto, t = connect(factory)
    proto.dataReceived(frame(msg(1)) + frame(msg(2)) + frame(msg(3)))
    assert t.value() == b""  # nothing durable yet: no ACK
    writer.commit(2)
    writer.commit(1)
    assert t.value() == b""  # the first frame's ACK must go first
    writer.commit(0)
    assert acks(t) == ["MSA|AA|C1", "MSA|AA|C2", "MSA|AA|C3"]


def test_store_failure_answers_ae_with_207():  # case 45 (original mode)
    factory, writer, metrics = setup()
    proto, t = connect(factory)
    proto.dataReceived(frame(msg(1)))
    writer.fail(0, OSError("disk full"))
    data = t.value().decode()
    assert "MSA|AE|C1\r" in data
    assert "ERR|||207^Application internal error^HL70357^^^^^^message could not be stored" in data
    assert metrics.registry.get_sample_value(
        "switchboard_store_errors_total", {"listener": "lab-in"}) == 1  # fmt: skip
    proto.dataReceived(frame(msg(2)))  # the connection stays usable
    writer.commit(1)
    assert acks(t)[-1] == "MSA|AA|C2"


def test_store_failure_enhanced_mode_is_cr():  # case 45 (enhanced)
    factory, writer, _ = setup()
    proto, t = connect(factory)
    proto.dataReceived(frame(msg(1, "|||AL|NE")))
    writer.fail(0, OSError("disk full"))
    assert acks(t) == ["MSA|CR|C1"]


def test_no_msh_gets_no_ack_and_connection_stays():  # case 36
    factory, writer, _ = setup()
    proto, t = connect(factory)
    proto.dataReceived(frame(b"INVALID PAYLOAD") + frame(msg(2)))
    assert writer.requests[0][0][0]["status"] == "rejected"
    assert writer.requests[0][0][0]["raw"] == b"INVALID PAYLOAD"
    writer.commit(0)
    writer.commit(1)
    assert acks(t) == ["MSA|AA|C2"]
    assert not t.disconnecting


def test_unsolicited_ack_not_acked():  # case 22
    factory, writer, _ = setup()
    proto, t = connect(factory)
    proto.dataReceived(frame(b"MSH|^~\\&|A|B|C|D|2024||ACK^A01|X1|P|2.5\rMSA|AA|C9\r"))
    writer.commit(0)
    assert t.value() == b""


def test_duplicate_replays_stored_ack_bytes():  # case 47
    factory, writer, metrics = setup()
    proto, t = connect(factory)
    proto.dataReceived(frame(msg(1)))
    writer.requests[0][1].callback([RowResult(7, duplicate_of=7, ack=b"FIRST-ACK-BYTES")])
    assert t.value() == frame(b"FIRST-ACK-BYTES")
    assert metrics.registry.get_sample_value(
        "switchboard_duplicates_total", {"listener": "lab-in"}) == 1  # fmt: skip


def test_connection_limit():  # case 21
    factory, _, metrics = setup()
    p1, _t1 = connect(factory)
    p2, _t2 = connect(factory)
    p3, _ = connect(factory)
    assert p1 is not None and p2 is not None and p3 is None
    assert metrics.registry.get_sample_value(
        "switchboard_connections_refused_total", {"listener": "lab-in"}) == 1  # fmt: skip
    p1.connectionLost(None)
    p4, _ = connect(factory)
    assert p4 is not None


def test_peer_gone_before_ack_keeps_row():  # case 46
    factory, writer, _ = setup()
    proto, _t = connect(factory)
    proto.dataReceived(frame(msg(1)))
    proto.connectionLost(None)
    writer.commit(0)  # the row is written all the same; the ACK has nowhere to go
    assert writer.requests[0][0][0]["control_id"] == "C1"


def test_frame_errors_counted():
    factory, _, metrics = setup(LISTENER.replace(max_frame_size=50))
    proto, t = connect(factory)
    proto.dataReceived(b"junk" + b"\x0b" + b"x" * 60)
    assert t.disconnecting
    get = metrics.registry.get_sample_value
    assert get("switchboard_frame_errors_total", {"listener": "lab-in", "reason": "junk"}) == 1
    assert get("switchboard_frame_errors_total",
               {"listener": "lab-in", "reason": "frame_too_large"}) == 1  # fmt: skip


def test_shutdown_writes_owed_acks_then_closes_and_takes_no_more_frames():
    factory, writer, metrics = setup()
    busy, t1 = connect(factory)
    idle, t2 = connect(factory)
    busy.dataReceived(frame(msg(1)))
    drained = factory.stopReading()
    assert t2.disconnecting and not t1.disconnecting  # nothing owed on the idle one
    busy.dataReceived(frame(msg(2)))  # arrives during shutdown: not stored, not ACKed
    assert len(writer.requests) == 1
    writer.commit(0)
    assert acks(t1) == ["MSA|AA|C1"] and t1.disconnecting
    assert not drained.called
    busy.connectionLost(None)
    idle.connectionLost(None)
    assert drained.called
    assert connect(factory) == (None, None)  # no new connections either
    labels = {"listener": "lab-in", "reason": "shutting_down"}
    assert metrics.registry.get_sample_value("switchboard_frame_errors_total", labels) == 1


def test_shutdown_drain_is_bounded():
    factory, _, _ = setup()
    busy, _ = connect(factory)
    busy.dataReceived(frame(msg(1)))
    drained = factory.stopReading(timeout=5)
    factory.clock.advance(5)
    assert drained.called


def test_allow_addresses():
    from twisted.internet.address import IPv4Address

    factory, _, metrics = setup(LISTENER.replace(allow_addresses=["10.20.0.0/16", "127.0.0.1"]))
    assert factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1)) is not None
    assert factory.buildProtocol(IPv4Address("TCP", "10.20.3.4", 1)) is not None
    assert factory.buildProtocol(IPv4Address("TCP", "10.21.0.1", 1)) is None
    assert metrics.registry.get_sample_value(
        "switchboard_connections_refused_total", {"listener": "lab-in"}) == 1  # fmt: skip
