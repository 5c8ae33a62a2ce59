"""The MLLP source (`mllp:` on a listener): frames from :mod:`engine.mllp.framing`, ACKs
written in frame order, TLS and allow-lists.

On reload, a listener whose only changes are among :data:`LIVE_KEYS` keeps running: the new
limits apply to new connections and to every open one (:meth:`MLLPSource.apply`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections import deque
from fnmatch import fnmatchcase

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory

from engine.config import Field, Spec
from engine.config.fieldtypes import EndpointString, ListOf
from engine.config.routes_spec import TLS
from engine.config.scalars import Bool, Duration, Int, Size, String
from engine.config.spec import Nested
from engine.intake import Intake
from engine.logging import get_logger
from engine.mllp.framing import LIMITS, FrameReceiver, frame
from engine.sources.listening import ListenerService

log = get_logger("mllp")

# Listener keys a reload applies in place (any other change restarts the listener).
LIVE_KEYS = frozenset({*LIMITS, "max_connections"})


class Network(String):
    """An IP address range in CIDR notation (a lone address is its own /32 or /128)."""

    name = "address range"

    def check(self, node, ctx, at):
        value = super().check(node, ctx, at)
        if not isinstance(value, str):
            return value
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            return ctx.error(node, f"invalid address range '{value}' for {at.key}: write an "
                             "address or a CIDR range like 10.20.0.0/16")  # fmt: skip
        return value


SPEC = Spec(
    "mllp",
    "Accept MLLP (TCP or TLS) on a Twisted server endpoint.",
    (
        Field(
            "mllp",
            EndpointString(),
            "Twisted server endpoint to accept MLLP on.",
            required=True,
            example="tcp:2575",
        ),
        Field("tls", Nested(TLS), "TLS settings; null for plain TCP.", nullable=True),
        Field(
            "max_frame_size",
            Size(min=1024),
            "Largest MLLP frame accepted.",
            default="16MiB",
        ),
        Field(
            "frame_timeout",
            Duration(),
            "Longest wait inside a frame before the connection is dropped.",
            default="10s",
        ),
        Field(
            "idle_timeout",
            Duration(),
            "Close a connection idle this long; null never closes it.",
            nullable=True,
        ),
        Field(
            "max_connections",
            Int(min=1),
            "Most connections open at once.",
            default=100,
        ),
        Field(
            "allow_addresses",
            ListOf(Network()),
            "Only peers in these address ranges may connect (CIDR, e.g. 10.20.0.0/16); empty: any.",
            default=[],
            example=["10.20.0.0/16", "127.0.0.1/32"],
        ),
        Field(
            "allow_subjects",
            ListOf(String()),
            "Only TLS clients whose verified certificate subject matches one of these "
            "(RFC 4514, * wildcards) may send; empty: any.",
            default=[],
            requires="tls",
            example=["CN=lab-gateway,O=Quest*"],
        ),
        Field(
            "require_end_of_data",
            Bool(),
            "A frame ends with 1C 0D (true) or a lone 1C is accepted too (false).",
            default=True,
        ),
    ),
)


def applies_live(old, new) -> bool:
    """Whether a listener's new settings differ from its old ones only in :data:`LIVE_KEYS`
    (an MLLP listener: a directory has none)."""
    changed = {
        f.name for f in dataclasses.fields(old) if getattr(old, f.name) != getattr(new, f.name)
    }
    return old.kind == new.kind == "mllp" and bool(changed) and changed <= LIVE_KEYS


class MLLPSource(ListenerService):
    """An MLLP listener: ``MLLPSource(listener settings, ctx)``, its intake built with it."""

    kind = "mllp"
    spec = SPEC

    def __init__(self, conf, ctx):
        self.intake = Intake(conf, ctx)
        self.server_factory = MLLPServerFactory(conf, self.intake, ctx)
        wrapped = self.server_factory
        creator = None
        if conf.tls:
            from engine.tls import serve_tls

            wrapped, creator = serve_tls(self.server_factory, conf.tls)
        super().__init__(serverFromString(ctx.reactor, conf.mllp), wrapped, conf.mllp,
                         drain=self.server_factory.stopReading, tls_creator=creator)  # fmt: skip
        self.setName(conf.name)

    def apply(self, conf) -> None:
        """Reload: new limits (see :func:`applies_live`) for every connection, kept open."""
        self.server_factory.applyLimits(conf)
        self.intake.listener = conf


class MLLPServerProtocol(FrameReceiver):
    factory: MLLPServerFactory

    def connectionMade(self) -> None:
        f = self.factory
        self.clock = f.clock
        for key, value in f.limits.items():
            setattr(self, key, value)
        super().connectionMade()
        peer = self.transport.getPeer()
        self.peer = f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"
        self._pending: deque = deque()  # [ack bytes | None | _WAIT] in frame order
        self._cert_checked = False
        self.peer_cert: str | None = None
        f.connectionOpened(self)

    def connectionLost(self, reason=None) -> None:
        super().connectionLost(reason)
        self.factory.connectionClosed(self)

    def _peerCert(self) -> str | None:
        if not self._cert_checked:
            self._cert_checked = True
            if self.factory.tls:
                from engine.tls import peer_certificate_info

                info = peer_certificate_info(self.transport)
                self.peer_cert = info["subject"] if info else None
        return self.peer_cert

    def frameReceived(self, payload: bytes) -> None:
        if self.factory.allow_subjects and not self._subjectAllowed():
            return
        if self.factory.stopping:
            # Shutting down: not stored, not ACKed; the sender sends it again after restart.
            self.factory.frameError(self, "shutting_down", len(payload))
            return
        slot = [_WAIT]
        self._pending.append(slot)
        try:
            self.factory.intake.handle_then(
                payload, self.peer, self._peerCert(), lambda ack: self._ackReady(ack, slot)
            )
        except Exception as exc:  # its text may quote message content: the type only
            log.error("intake failed", peer=self.peer, error=type(exc).__name__)
            log.debug("intake failure", peer=self.peer, exc_info=True)
            self._ackReady(None, slot)

    def _subjectAllowed(self) -> bool:
        """The verified client certificate must match allow_subjects; else nothing from this
        connection is stored and it is closed."""
        subject = self._peerCert()
        if subject and any(fnmatchcase(subject, p) for p in self.factory.allow_subjects):
            return True
        self.factory.refuse(self, "subject_not_allowed", subject=subject or "(none)")
        self._close()
        return False

    def _ackReady(self, ack: bytes | None, slot: list) -> None:
        slot[0] = ack
        pending = self._pending
        transport = self.transport
        while pending and pending[0][0] is not _WAIT:
            ack = pending.popleft()[0]
            if ack is not None and not self._closing:
                transport.write(frame(ack))
        self._last = self.clock.seconds()
        if not pending and self.factory.stopping:
            self.transport.loseConnection()  # every ACK owed is written: close after the flush

    def isBusy(self) -> bool:
        return bool(self._pending)

    def frameError(self, reason: str, discarded: int) -> None:
        self.factory.frameError(self, reason, discarded)

    def junkReceived(self, junk: bytes) -> None:
        self.factory.frameError(self, "junk", len(junk))


_WAIT = object()


class MLLPServerFactory(Factory):
    protocol = MLLPServerProtocol

    def __init__(self, listener, intake, ctx):
        self.listener = listener
        self.name = listener.name
        self.intake = intake
        self.clock = ctx.clock
        self.tls = bool(listener.tls)
        self._readLimits(listener)
        self.open: set[MLLPServerProtocol] = set()
        self.stopping = False
        self.allow_networks = [
            ipaddress.ip_network(n, strict=False) for n in listener.allow_addresses
        ]
        self.allow_subjects = list(listener.allow_subjects or ())  # None without tls
        self.log = get_logger("mllp", listener=self.name)
        metrics = ctx.metrics
        self.m_conn = metrics.connections.labels(self.name)
        self.m_refused = metrics.connections_refused.labels(self.name)
        self.m_open = metrics.connections_open.labels(self.name)
        self._frame_errors = metrics.frame_errors

    def _readLimits(self, listener) -> None:
        # for each connection (engine.mllp.framing.LIMITS)
        self.limits = {key: getattr(listener, key) for key in LIMITS}
        self.max_connections = listener.max_connections

    def applyLimits(self, listener) -> None:
        """Reload: the listener's new limits for new connections and every open one. Lowering
        max_connections closes none; new ones are refused until fewer are open."""
        self.listener = listener
        self._readLimits(listener)
        for proto in list(self.open):
            proto.setLimits(**self.limits)
        self.log.info("limits applied", connections=len(self.open),
                      max_connections=self.max_connections, **self.limits)  # fmt: skip

    def stopReading(self, timeout: float = 10.0) -> Deferred:
        """On shutdown: take no more frames, write the ACKs still owed as their commits end,
        close each connection after its last ACK. Fires when all are closed, or at timeout."""
        self.stopping = True
        self._drained = Deferred()
        # Reading goes on (frames arriving now are dropped, see frameReceived): a paused
        # transport could not see the peer's close, and TLS could not finish closing.
        for proto in list(self.open):
            if not proto._pending:
                proto.transport.loseConnection()
        if not self.open:
            self._drained.callback(None)
        else:
            timer = self.clock.callLater(timeout, self._drainTimeout)
            self._drained.addBoth(lambda r: timer.cancel() if timer.active() else None)
        return self._drained

    def _drainTimeout(self) -> None:
        self.log.warning("connections still open at shutdown", connections=len(self.open))
        if not self._drained.called:
            self._drained.callback(None)

    def buildProtocol(self, addr):
        if self.stopping:
            return None
        if self.allow_networks and not self._addressAllowed(addr):
            self.m_refused.inc()
            peer = f"{getattr(addr, 'host', '?')}:{getattr(addr, 'port', '?')}"
            self.log.warning("connection refused: address not allowed", peer=peer)
            return None
        if len(self.open) >= self.max_connections:
            self.m_refused.inc()
            self.log.warning(
                "connection refused: max_connections reached",
                peer=f"{getattr(addr, 'host', '?')}:{getattr(addr, 'port', '?')}",
                max_connections=self.max_connections,
            )
            return None
        return super().buildProtocol(addr)

    def _addressAllowed(self, addr) -> bool:
        try:
            ip = ipaddress.ip_address(getattr(addr, "host", ""))
        except ValueError:
            return False
        return any(ip in net for net in self.allow_networks)

    def refuse(self, proto: MLLPServerProtocol, reason: str, **fields) -> None:
        self.m_refused.inc()
        self.log.warning("connection refused: " + reason.replace("_", " "), peer=proto.peer,
                         **fields)  # fmt: skip

    def connectionOpened(self, proto: MLLPServerProtocol) -> None:
        self.open.add(proto)
        self.m_conn.inc()
        self.m_open.inc()
        self.log.debug("connection opened", peer=proto.peer)

    def connectionClosed(self, proto: MLLPServerProtocol) -> None:
        if proto in self.open:
            self.open.discard(proto)
            self.m_open.dec()
        # A connect-then-close probe (load balancer health check) is not worth more than debug.
        self.log.debug("connection closed", peer=proto.peer, frames=proto.frames_seen)
        if self.stopping and not self.open and not self._drained.called:
            self._drained.callback(None)

    def frameError(self, proto: MLLPServerProtocol, reason: str, discarded: int) -> None:
        self._frame_errors.labels(self.name, reason).inc()
        level = self.log.info if reason in ("idle_timeout", "empty_frame") else self.log.warning
        level("mllp framing: " + reason.replace("_", " "), peer=proto.peer, bytes=discarded)
