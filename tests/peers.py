"""Real peers for delivery tests: an MLLP receiver that ACKs (or not) and records."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.task import deferLater

from engine.delivery.outcome import control_id_of
from engine.mllp.framing import FrameReceiver, frame


class _PeerProtocol(FrameReceiver):
    def connectionMade(self):
        self.clock = reactor
        self.frame_timeout = None
        super().connectionMade()

    def frameReceived(self, payload: bytes) -> None:
        peer = self.factory
        cid = control_id_of(payload)
        peer.received.append(cid)
        code = peer.script.get(cid, []).pop(0) if peer.script.get(cid) else "AA"
        if code == "none":
            return
        self.transport.write(frame(
            f"MSH|^~\\&|PEER|P|SB|S|2024||ACK^A01^ACK|P{len(peer.received)}|P|2.5\r"
            f"MSA|{code}|{cid}\r".encode()))  # fmt: skip


class MLLPPeer(Factory):
    """Listens on 127.0.0.1; ``received`` lists the MSH-10 of every message, in order."""

    protocol = _PeerProtocol

    def __init__(self, port: int = 0):
        self.port = port
        self.received: list[str] = []
        self.script: dict[str, list[str]] = {}  # control id -> ACK codes to answer in turn
        self.listening = None

    def start(self):
        ep = TCP4ServerEndpoint(reactor, self.port, interface="127.0.0.1")
        d = ep.listen(self)

        def listening(port):
            self.listening = port
            self.port = port.getHost().port
            return self

        return d.addCallback(listening)

    def stop(self):
        port, self.listening = self.listening, None
        return port.stopListening() if port else None


async def wait_for(predicate, timeout: float = 10.0, step: float = 0.02) -> bool:
    """Poll ``predicate`` on the reactor (bounded); True once it holds."""
    waited = 0.0
    while waited < timeout:
        if predicate():
            return True
        await deferLater(reactor, step, lambda: None)
        waited += step
    return predicate()
