"""protocol.md section D (cases 51-57): the MLLP sender against scripted peers.

Unit tests drive timing with MemoryReactorClock; integration tests use real peers on 127.0.0.1.
"""

from __future__ import annotations

import socket

import pytest
import pytest_twisted
from twisted.internet.error import ConnectionAborted, ConnectionRefusedError
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from engine.certs import init_certs, make_ca, make_cert
from engine.config import ConfigError
from engine.delivery.outcome import DEAD, OK, RETRY, Delivery, control_id_of
from engine.destinations.mllp.sender import MLLPSender
from engine.mllp.framing import FrameReceiver, frame
from engine.tls import wrap_server_factory

from . import settings


def message(ctrl: str) -> bytes:
    return f"MSH|^~\\&|SND|SF|RCV|RF|20240101||ADT^A01|{ctrl}|P|2.5\rPID|1||123\r".encode()


def delivery(ctrl: str, n: int = 1) -> Delivery:
    return Delivery(n, n, "adt", "peer", message(ctrl), "x-application/hl7-v2+er7",
                    control_id=ctrl)  # fmt: skip


def ack(code: str, ctrl: str) -> bytes:
    msh = f"MSH|^~\\&|RCV|RF|SND|SF|20240101||ACK^A01^ACK|A{ctrl}|P|2.5"
    return f"{msh}\rMSA|{code}|{ctrl}\r".encode()


# A scripted peer: one action per message received (default AA), shared by its connections.
REPLIES = {
    "none": lambda ctrl, prev: b"",
    "garbage": lambda ctrl, prev: frame(b"this is not HL7"),
    "empty": lambda ctrl, prev: frame(b""),
    "no_msa": lambda ctrl, prev: frame(b"MSH|^~\\&|RCV|RF|SND|SF|2024||ACK|A1|P|2.5\r"),
    "bad_code": lambda ctrl, prev: frame(ack("OK", ctrl)),
    "embedded_sb": lambda ctrl, prev: frame(ack("AA", ctrl).replace(b"\rMSA", b"\r\x0bMSA")),
    "embedded_eb": lambda ctrl, prev: frame(ack("AA", ctrl).replace(b"|P|", b"|\x1c|")),
    "wrong": lambda ctrl, prev: frame(ack("AA", "OTHER")),
    "late": lambda ctrl, prev: frame(ack("AA", prev)),  # the ACK for the previous message
    "junk_then_aa": lambda ctrl, prev: b"JUNK\r\n" + frame(ack("AA", ctrl)),
}


class Peer(FrameReceiver):
    frame_timeout = None

    def connectionMade(self) -> None:
        from twisted.internet import reactor

        self.clock = reactor
        super().connectionMade()
        self.factory.connections += 1

    def frameReceived(self, payload: bytes) -> None:
        f = self.factory
        ctrl = control_id_of(payload)
        prev = f.received[-1] if f.received else ""
        f.received.append(ctrl)
        action = f.script.pop(0) if f.script else "AA"
        if action == "close":
            self.transport.loseConnection()
        elif action in REPLIES:
            self.transport.write(REPLIES[action](ctrl, prev))
        else:
            self.transport.write(frame(ack(action, ctrl)))


class PeerFactory(Factory):
    protocol = Peer

    def __init__(self) -> None:
        self.script: list[str] = []
        self.received: list[str] = []
        self.connections = 0
        self.port = 0


def listen(factory: PeerFactory, wrapped=None):
    from twisted.internet import reactor

    port = reactor.listenTCP(0, wrapped or factory, interface="127.0.0.1")
    factory.port = port.getHost().port
    return port


@pytest.fixture
def peer():
    factory = PeerFactory()
    port = listen(factory)
    yield factory
    pytest_twisted.blockon(port.stopListening())


@pytest.fixture
def make_sender():
    from twisted.internet import reactor

    senders: list[MLLPSender] = []

    def make(port: int, **config) -> MLLPSender:
        config = {"name": "peer", "mllp": f"tcp:127.0.0.1:{port}", "ack_timeout": 5.0,
                  "connect_timeout": 5.0, **config}  # fmt: skip
        sender = MLLPSender(
            settings.destination("mllp", **config), settings.context(reactor=reactor)
        )
        sender.start()
        senders.append(sender)
        return sender

    yield make
    for sender in senders:
        pytest_twisted.blockon(sender.stop())


# Unit tests: MemoryReactorClock ---------------------------------------------------------------
def memory_sender(**config) -> tuple[MLLPSender, MemoryReactorClock]:
    reactor = MemoryReactorClock()
    config = {"name": "peer", "mllp": "tcp:10.0.0.1:2575", "ack_timeout": 5.0, **config}
    sender = MLLPSender(settings.destination("mllp", **config), settings.context(reactor=reactor))
    sender.start()
    return sender, reactor


def accept(reactor: MemoryReactorClock, attempt: int = -1):
    """Let connection attempt ``attempt`` succeed; the protocol and its transport."""
    proto = reactor.tcpClients[attempt][2].buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


def test_ack_timeout_resets_connection_and_next_send_reconnects_at_once():  # case 53
    sender, reactor = memory_sender()
    assert sender.state == "connecting"
    results = []
    sender.send(delivery("C1")).addCallback(results.append)
    proto, transport = accept(reactor)
    assert sender.state == "connected" and transport.value() == frame(message("C1"))
    reactor.advance(4.9)
    assert results == []
    reactor.advance(0.1)
    assert (results[0].kind, results[0].error) == (RETRY, "no ACK within 5 s")
    assert transport.disconnecting and sender.state == "down"
    proto.dataReceived(frame(ack("AA", "C1")))  # the late ACK is never read
    sender.send(delivery("C2", 2)).addCallback(results.append)
    assert len(reactor.tcpClients) == 1  # waits until the reset connection is gone
    proto.connectionLost(Failure(ConnectionAborted()))
    assert len(reactor.tcpClients) == 2  # then connects without waiting out the backoff
    proto2, transport2 = accept(reactor)
    assert transport2.value() == frame(message("C2"))
    proto2.dataReceived(frame(ack("AA", "C2")))
    assert (results[1].kind, results[1].code) == (OK, "AA")
    assert not transport2.disconnecting and sender.state == "connected"


def test_partial_ack_is_a_timeout_and_junk_is_reported():  # case 53
    sender, reactor = memory_sender(ack_timeout=2)
    results = []
    sender.send(delivery("C1")).addCallback(results.append)
    proto, transport = accept(reactor)
    proto.dataReceived(b"JUNK" + frame(ack("AA", "C1"))[:20])
    reactor.advance(2)
    assert results[0].kind == RETRY
    assert results[0].error == "no ACK within 2 s (4 bytes outside an MLLP frame dropped)"
    assert transport.disconnecting


def test_refused_connection_is_a_prompt_retry_and_reconnects_with_backoff():
    sender, reactor = memory_sender()
    results = []
    sender.send(delivery("C1")).addCallback(results.append)
    reactor.tcpClients[0][2].clientConnectionFailed(None, Failure(ConnectionRefusedError()))
    reactor.advance(0)
    assert results[0].kind == RETRY and "refused" in results[0].error
    assert results[0].error.startswith("cannot connect to tcp:10.0.0.1:2575")
    assert sender.state == "down"
    reactor.advance(0.9)  # first backoff: 1 s plus up to 1 s of jitter
    assert len(reactor.tcpClients) == 1
    reactor.advance(1.1)
    assert len(reactor.tcpClients) == 2 and sender.state == "connecting"
    accept(reactor)
    assert sender.state == "connected"


def test_ack_read_byte_by_byte_then_unsolicited_ack_resets():  # cases 3, 22 on the sender side
    sender, reactor = memory_sender()
    results = []
    sender.send(delivery("C1")).addCallback(results.append)
    proto, transport = accept(reactor)
    for byte in frame(ack("CA", "C1")):
        proto.dataReceived(bytes([byte]))
    assert (results[0].kind, results[0].code) == (OK, "CA")
    assert results[0].response == ack("CA", "C1").decode().replace("\r", "\n")
    assert not transport.disconnecting
    proto.dataReceived(frame(ack("AA", "C1")))  # nothing in flight: dropped, connection reset
    assert transport.disconnecting and sender.state == "down"


def test_send_is_refused_while_busy_and_after_stop():
    sender, reactor = memory_sender()
    first, second, late = [], [], []
    sender.send(delivery("C1")).addCallback(first.append)
    sender.send(delivery("C2", 2)).addCallback(second.append)
    assert second[0].kind == RETRY and "in flight" in second[0].error
    accept(reactor)
    sender.stop()
    assert (first[0].kind, first[0].error) == (RETRY, "sender stopped before the ACK")
    sender.send(delivery("C3", 3)).addCallback(late.append)
    assert (late[0].kind, sender.state) == (RETRY, "down")
    assert not reactor.getDelayedCalls()


def test_a_bug_while_sending_is_still_an_outcome():  # send() never errbacks
    sender, reactor = memory_sender()
    sender._write = lambda att, proto: 1 / 0
    results = []
    sender.send(delivery("C1")).addBoth(results.append)
    accept(reactor)
    reactor.advance(0)
    assert results[0].kind == RETRY and "ZeroDivisionError" in results[0].error


def test_bad_policy_option_is_rejected():
    with pytest.raises(ConfigError, match="on_reject"):
        settings.destination("mllp", mllp="tcp:h:1", on_reject="drop")


# Integration: real peers on 127.0.0.1 ------------------------------------------------------------
@pytest_twisted.inlineCallbacks
def test_ack_codes_map_to_outcomes_on_one_kept_connection(peer, make_sender):  # cases 51, 52
    expected = [("AA", OK), ("CA", OK), ("AE", RETRY), ("CE", RETRY), ("AR", DEAD), ("CR", DEAD)]
    peer.script = [code for code, _ in expected]
    sender = make_sender(peer.port)
    for i, (code, kind) in enumerate(expected):
        outcome = yield sender.send(delivery(f"C{i}", i))
        assert (outcome.kind, outcome.code) == (kind, code)
        assert f"\nMSA|{code}|C{i}\n" in outcome.response
    assert peer.received == [f"C{i}" for i in range(len(expected))]
    assert peer.connections == 1 and sender.state == "connected"


@pytest_twisted.inlineCallbacks
def test_policy_options_turn_ae_dead_and_ar_retry(peer, make_sender):  # case 52
    peer.script = ["AE", "AR"]
    sender = make_sender(peer.port, on_error="dead", on_reject="retry")
    error = yield sender.send(delivery("C1"))
    reject = yield sender.send(delivery("C2", 2))
    assert (error.kind, error.code, reject.kind, reject.code) == (DEAD, "AE", RETRY, "AR")


@pytest.mark.parametrize(
    "action, error",
    [
        ("none", "no ACK within 0.2 s"),  # 53
        ("garbage", "invalid ACK: reply of 15 bytes does not start with an MSH segment"),  # 55
        ("empty", "invalid ACK: empty frame"),  # 55
        ("no_msa", "invalid ACK: no MSA segment"),  # 55
        ("bad_code", "invalid ACK: MSA-1 'OK' is not an acknowledgement code"),
        ("embedded_sb", "invalid ACK: start block 0x0B inside the reply"),  # 55
        ("embedded_eb", "invalid ACK: end block 0x1C inside the reply"),  # 55
        ("wrong", "ACK for OTHER while waiting for C1"),  # 54
        ("close", "connection lost before the ACK: closed by the peer"),  # 56
    ],
)
@pytest_twisted.inlineCallbacks
def test_failed_reply_is_retried_and_next_send_uses_a_fresh_connection(
    peer, make_sender, action, error
):
    peer.script = [action, "AA"]
    sender = make_sender(peer.port, ack_timeout=0.2 if action == "none" else 5.0)
    failed = yield sender.send(delivery("C1"))
    assert (failed.kind, failed.error) == (RETRY, error)
    sender.ack_timeout = 5.0
    delivered = yield sender.send(delivery("C2", 2))
    assert (delivered.kind, delivered.code) == (OK, "AA")
    assert peer.received == ["C1", "C2"] and peer.connections == 2


@pytest_twisted.inlineCallbacks
def test_late_ack_for_an_earlier_message_is_never_success(peer, make_sender):  # case 54
    peer.script = ["none", "late", "AA"]
    sender = make_sender(peer.port, ack_timeout=0.2)
    first = yield sender.send(delivery("C1"))
    assert first.error == "no ACK within 0.2 s"
    sender.ack_timeout = 5.0
    second = yield sender.send(delivery("C2", 2))
    assert (second.kind, second.code) == (RETRY, "AA")
    assert second.error == "ACK for C1 while waiting for C2"
    third = yield sender.send(delivery("C3", 3))
    assert third.kind == OK and peer.connections == 3


@pytest_twisted.inlineCallbacks
def test_junk_before_the_ack_is_dropped(peer, make_sender):  # case 7 on the sender side
    peer.script = ["junk_then_aa"]
    sender = make_sender(peer.port)
    outcome = yield sender.send(delivery("C1"))
    assert (outcome.kind, outcome.code) == (OK, "AA")


@pytest_twisted.inlineCallbacks
def test_refused_connection_gives_a_retry_not_a_wait(make_sender):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sender = make_sender(port)  # connect_timeout 5 s: a wait would say "not connected within"
    for n in (1, 2):  # the second send attempts at once instead of waiting out the backoff
        outcome = yield sender.send(delivery(f"C{n}", n))
        assert outcome.kind == RETRY and "refused" in outcome.error, outcome.error
    assert sender.state == "down"


# TLS ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    init_certs(d)
    other = make_ca("Another CA")
    make_cert("localhost", other, purpose="server", hosts=["localhost", "127.0.0.1"]).write(
        d / "other.pem", d / "other.key"
    )
    return d


def tls_peer(certs, cert: str):
    factory = PeerFactory()
    server_tls = settings.tls(
        cert=str(certs / f"{cert}.pem"),
        key=str(certs / f"{cert}.key"),
        client_ca=str(certs / "ca.pem"),
        require_client_cert="require",
    )
    return factory, listen(factory, wrap_server_factory(factory, server_tls))


def client_tls(certs) -> dict:
    return {"ca": str(certs / "ca.pem"), "cert": str(certs / "client.pem"),
            "key": str(certs / "client.key"), "server_name": "localhost"}  # fmt: skip


@pytest_twisted.inlineCallbacks
def test_send_over_mutual_tls(certs, make_sender):
    factory, port = tls_peer(certs, "server")
    try:
        sender = make_sender(factory.port, tls=client_tls(certs))
        outcome = yield sender.send(delivery("C1"))
        assert (outcome.kind, outcome.code) == (OK, "AA")
        assert factory.received == ["C1"] and sender.state == "connected"
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_server_certificate_from_another_ca_is_a_retry(certs, make_sender):  # case 64
    factory, port = tls_peer(certs, "other")
    try:
        sender = make_sender(factory.port, tls=client_tls(certs))
        outcome = yield sender.send(delivery("C1"))
        assert outcome.kind == RETRY and "certificate verify failed" in outcome.error
        assert outcome.error.startswith("cannot connect to")
        assert factory.received == [] and sender.state == "down"
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_no_client_certificate_for_a_requiring_server_is_a_retry(certs, make_sender):  # case 62
    factory, port = tls_peer(certs, "server")
    try:
        sender = make_sender(factory.port, tls={**client_tls(certs), "cert": None, "key": None})
        outcome = yield sender.send(delivery("C1"))
        assert outcome.kind == RETRY and "certificate" in outcome.error, outcome.error
        assert factory.received == []
    finally:
        yield port.stopListening()
