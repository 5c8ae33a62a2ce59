"""MLLP sender: one kept connection to a peer, one message in flight, each ACK checked.

Behaviour (protocol.md section D):
- 51/52: MSA-1 AA/CA is delivered; AE/CE is retried (``on_error: retry|dead``); AR/CR is dead
  (``on_reject: dead|retry``). The connection is kept after any matching ACK.
- 53: no complete ACK within ``ack_timeout``: retry, and the connection is reset (aborted) so a
  late ACK can never be read as the answer to the next message; the next send reconnects.
- 54: MSA-2 must equal the sent MSH-10; a mismatch (a late ACK for an earlier message) is
  retried and the connection reset. An ACK while nothing is in flight is dropped, logged, and the
  connection reset.
- 55: a reply that is not an HL7 ACK (garbage, empty frame, no MSA, 0B/1C inside) is retried as
  an invalid ACK and the connection reset.
- 56: a connection lost after the send is a retry; the sender never resends by itself (the queue
  decides, so a peer may see the message twice: it must deduplicate on MSH-10, case 47).
- 57: the queue bounds retries; reconnection backs off (0.5 s doubling to 30 s) while idle, and
  a send while the connection is down makes one attempt at once rather than wait for it.

Built on ``ClientService``. The endpoint is wrapped so that, with TLS, a connection counts as
made only after the handshake: a bad certificate is a failed attempt (it backs off, and the
send gets the TLS error) rather than a connection that drops after the message was written.
(ClientService's ``prepareConnection`` cannot do this: a connection lost while it is pending
raises automat's NoTransition in Twisted 26.) The wrapper also reports a lost connection only
after ClientService has seen it, so an outcome never re-enters its state machine.
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import clientFromString, wrapClientTLS
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from engine.config.endpoints import parse_endpoint
from engine.delivery.outcome import Delivery, Outcome, control_id_of
from engine.logging import get_logger
from engine.mllp.framing import FrameReceiver, frame
from engine.tls import client_tls_options

ACK_CODES = frozenset({"AA", "AE", "AR", "CA", "CE", "CR"})
MAX_ACK_SIZE = 1024 * 1024


class InvalidAck(ValueError):
    """The reply is not an HL7 acknowledgement (the message says why, without content)."""


def ack_text(payload: bytes) -> str:
    """The reply as text with segment separators turned into newlines."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        text = payload.decode("latin-1")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def parse_ack(payload: bytes) -> tuple[str, str]:
    """(MSA-1, MSA-2) of an ACK payload; InvalidAck when it is not one."""
    for byte, name in ((0x0B, "start block 0x0B"), (0x1C, "end block 0x1C")):
        if byte in payload:
            raise InvalidAck(f"{name} inside the reply")
    text = payload.decode("latin-1").removeprefix("\xef\xbb\xbf").lstrip("\r\n")
    if not text.startswith("MSH") or len(text) < 8:
        raise InvalidAck(f"reply of {len(payload)} bytes does not start with an MSH segment")
    sep = text[3]
    segments = text.replace("\r\n", "\r").replace("\n", "\r").split("\r")
    msa = next((s.split(sep) for s in segments if s.startswith("MSA" + sep)), None)
    if msa is None:
        raise InvalidAck("no MSA segment")
    code = msa[1].strip() if len(msa) > 1 else ""
    if code not in ACK_CODES:
        raise InvalidAck(f"MSA-1 {code[:8]!r} is not an acknowledgement code")
    return code, (msa[2].strip() if len(msa) > 2 else "")


def _reason(failure: Failure) -> str:
    if failure.check(ConnectionDone):
        return "closed by the peer"
    return failure.getErrorMessage() or failure.type.__name__


class _MLLPClientProtocol(FrameReceiver):
    frame_timeout = None  # the sender's ACK timer covers a partial ACK
    idle_timeout = None
    max_frame_size = MAX_ACK_SIZE

    def __init__(self, sender: MLLPSender):
        self.sender = sender
        self.clock = sender._clock
        self.closing = False
        self.junk_bytes = 0
        self.partial = False
        self._lost_waiters: list[Deferred] = []

    def connectionMade(self) -> None:
        super().connectionMade()
        self.sender._connected(self)

    def frameReceived(self, payload: bytes) -> None:
        self.sender._reply(self, payload)

    def frameError(self, reason: str, discarded: int) -> None:
        if reason == "closed_in_frame":
            self.partial = True
        else:
            self.sender._frame_error(self, reason, discarded)

    def junkReceived(self, junk: bytes) -> None:
        self.junk_bytes += len(junk)
        self.sender._log.warning("mllp_sender.junk_dropped", bytes=len(junk))

    def reset(self) -> None:
        """Abort the connection: nothing more is read from it."""
        if not self.closing:
            self.closing = self._closing = True
            self.transport.abortConnection()

    def whenLost(self) -> Deferred:
        d: Deferred = Deferred()
        self._lost_waiters.append(d)
        return d

    def afterConnectionLost(self, reason: Failure) -> None:
        """Called by the gate once ClientService has processed the loss."""
        self.closing = True
        self.sender._lost(self, reason)
        waiters, self._lost_waiters = self._lost_waiters, []
        for d in waiters:
            d.callback(None)


@implementer(IHandshakeListener)
class _Gate(Protocol):
    """Sits under ClientService's protocol: opens it after the TLS handshake (if any) and
    reports a lost connection to it after ClientService has seen the loss."""

    inner: Any = None
    timer: Any = None
    failure: Failure | None = None  # why the gate closed the connection itself

    def __init__(self, factory: Any, addr: Any, ready: Deferred, gated: _GatedEndpoint):
        self.factory, self.addr, self.ready, self.gated = factory, addr, ready, gated

    def connectionMade(self) -> None:
        if not self.gated.handshake:
            self._open()
        else:
            self.timer = self.gated.clock.callLater(self.gated.timeout, self._handshakeTimeout)

    def _handshakeTimeout(self) -> None:
        self.timer = None
        self.failure = Failure(TimeoutError(f"no TLS handshake within {self.gated.timeout:g} s"))
        self.transport.abortConnection()

    def handshakeCompleted(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        self._open()

    def _open(self) -> None:
        if self.ready.called:  # cancelled meanwhile
            self.transport.abortConnection()
            return
        self.inner = self.factory.buildProtocol(self.addr)
        self.inner.makeConnection(self.transport)
        self.ready.callback(self.inner)

    def dataReceived(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.dataReceived(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        if self.inner is None:
            if not self.ready.called:
                self.ready.errback(self.failure or reason)
            return
        self.inner.connectionLost(reason)  # ClientService sees the loss first...
        after = getattr(self.inner, "afterConnectionLost", None)
        if after is not None:
            after(reason)  # ...then the sender


class _GateFactory(Factory):
    def __init__(self, factory: Any, ready: Deferred, gated: _GatedEndpoint):
        self.factory, self.ready, self.gated = factory, ready, gated
        self.gate: _Gate | None = None

    def buildProtocol(self, addr: Any) -> _Gate:
        self.gate = _Gate(self.factory, addr, self.ready, self.gated)
        return self.gate


class _GatedEndpoint:
    """An IStreamClientEndpoint whose connect() fires once the connection is usable."""

    def __init__(self, endpoint: Any, clock: Any, handshake: bool, timeout: float):
        self.endpoint, self.clock = endpoint, clock
        self.handshake, self.timeout = handshake, timeout
        self.attempts = 0  # connection attempts in progress

    def connect(self, factory: Any) -> Deferred:
        gate_factory: _GateFactory

        def cancel(_: Deferred) -> None:
            connecting.cancel()
            gate = gate_factory.gate
            if gate is not None and gate.transport is not None and gate.inner is None:
                gate.transport.abortConnection()

        def done(result: Any) -> Any:
            self.attempts -= 1
            return result

        ready: Deferred = Deferred(cancel)
        ready.addBoth(done)
        self.attempts += 1
        gate_factory = _GateFactory(factory, ready, self)
        connecting = self.endpoint.connect(gate_factory)
        connecting.addErrback(lambda f: None if ready.called else ready.errback(f))
        return ready


class _InFlight:
    def __init__(self, delivery: Delivery, expected: str):
        self.delivery = delivery
        self.expected = expected
        self.result: Deferred = Deferred()
        self.proto: _MLLPClientProtocol | None = None
        self.timer: Any = None
        self.done = False


class MLLPSender:
    """Deliver messages to one MLLP peer over a kept connection (see the module docstring)."""

    def __init__(self, config, ctx):
        self.name = config.name
        self.target = config.mllp
        self.ack_timeout = float(config.ack_timeout)
        self.connect_timeout = float(config.connect_timeout)
        self.on_error = config.on_error
        self.on_reject = config.on_reject
        self._clock = ctx.clock
        self._log = get_logger("mllp_sender", destination=self.name)
        parsed = parse_endpoint(self.target, server=False)
        endpoint = clientFromString(ctx.reactor, self.target)
        tls = config.tls
        if tls:
            if parsed.kind != "tcp":
                raise ValueError(f"a tls section needs a 'tcp:' endpoint, not {self.target!r}")
            hostname = tls.server_name or parsed.host or ""
            options = client_tls_options(hostname, _path(tls.ca), _path(tls.cert),
                                         _path(tls.key), str(tls.min_version))  # fmt: skip
            endpoint = wrapClientTLS(options, endpoint)
        handshake = bool(tls) or parsed.kind == "tls"
        self._endpoint = _GatedEndpoint(endpoint, self._clock, handshake, self.connect_timeout)
        factory = Factory.forProtocol(lambda: _MLLPClientProtocol(self))
        self._service = ClientService(
            self._endpoint,
            factory,
            retryPolicy=backoffPolicy(initialDelay=0.5, maxDelay=30, factor=2),
            clock=self._clock,
        )
        self._running = False
        self._proto: _MLLPClientProtocol | None = None
        self._current: _InFlight | None = None

    # public API ---------------------------------------------------------------------------
    @property
    def state(self) -> str:
        """One of connected, connecting, down (for health metrics)."""
        if not self._running:
            return "down"
        if self._proto is not None and not self._proto.closing:
            return "connected"
        return "connecting" if self._endpoint.attempts else "down"

    def start(self) -> None:
        if not self._running:
            self._running = True
            self._service.startService()

    def stop(self) -> Deferred:
        self._running = False
        if self._current is not None:
            self._finish(self._current, Outcome.retry("sender stopped before the ACK"))
        if not self._service.running:
            return succeed(None)
        return self._service.stopService()

    def send(self, delivery: Delivery) -> Deferred:
        """Send one message and read its ACK. Fires with an Outcome; never errbacks."""
        if not self._running:
            return succeed(Outcome.retry("sender is not running"))
        if self._current is not None:
            return succeed(Outcome.retry("another message is in flight on this connection"))
        att = _InFlight(delivery, delivery.control_id or control_id_of(delivery.payload))
        self._current = att
        att.timer = self._clock.callLater(self.connect_timeout, self._timed_out, att, "connect")
        proto = self._proto
        if proto is not None and proto.closing:  # reset but not yet gone: reconnect after
            proto.whenLost().addCallback(lambda _: self._acquire(att))
        else:
            self._acquire(att)
        return att.result

    # connection ---------------------------------------------------------------------------
    def _acquire(self, att: _InFlight) -> None:
        if att.done:
            return
        try:
            if self._proto is None and not self._endpoint.attempts:
                # ClientService is waiting out its backoff: attempt now, not at its timer.
                self._service.stopService()
                self._service.startService()
            waiting = self._service.whenConnected(failAfterFailures=1)
        except Exception:
            self._internal_error(Failure(), att)
            return
        waiting.addCallbacks(
            lambda proto: self._write(att, proto), lambda f: self._connect_failed(att, f)
        )
        waiting.addErrback(self._internal_error, att)

    def _internal_error(self, failure: Failure, att: _InFlight) -> None:
        """A bug, not a peer problem: still an Outcome (send never errbacks), logged loudly."""
        self._log.error("mllp_sender.internal_error", exception=failure.getTraceback())
        error = f"internal error in the MLLP sender: {failure.type.__name__}"
        self._clock.callLater(0, self._finish, att, Outcome.retry(error))

    def _connect_failed(self, att: _InFlight, failure: Failure) -> None:
        outcome = Outcome.retry(f"cannot connect to {self.target}: {_reason(failure)}")
        # Fired from inside ClientService's state machine: hand the outcome over a turn later
        # so that a send() made from its callback does not re-enter the machine.
        self._clock.callLater(0, self._finish, att, outcome)

    def _write(self, att: _InFlight, proto: _MLLPClientProtocol) -> None:
        if att.done:
            return  # timed out meanwhile; the connection is kept for the next message
        if proto.closing:
            self._clock.callLater(0, self._finish, att, Outcome.retry("connection closed"))
            return
        if att.timer is not None and att.timer.active():
            att.timer.cancel()
        att.proto = proto
        proto.junk_bytes = 0
        att.timer = self._clock.callLater(self.ack_timeout, self._timed_out, att, "ack")
        proto.transport.write(frame(att.delivery.payload))
        self._log.debug("mllp_sender.sent", delivery=att.delivery.id, control_id=att.expected)

    def _connected(self, proto: _MLLPClientProtocol) -> None:
        self._proto = proto
        self._log.info("mllp_sender.connected", target=self.target)

    def _lost(self, proto: _MLLPClientProtocol, reason: Failure) -> None:
        if self._proto is proto:
            self._proto = None
        att = self._current
        if att is not None and att.proto is proto:
            detail = " (partial ACK)" if proto.partial else ""
            self._finish(att, Outcome.retry(f"connection lost before the ACK{detail}: "
                                            f"{_reason(reason)}"))  # fmt: skip
        self._log.info("mllp_sender.disconnected", reason=_reason(reason))

    # replies ------------------------------------------------------------------------------
    def _timed_out(self, att: _InFlight, phase: str) -> None:
        att.timer = None
        if phase == "connect":
            error = f"not connected to {self.target} within {self.connect_timeout:g} s"
            self._finish(att, Outcome.retry(error))
            return
        error = f"no ACK within {self.ack_timeout:g} s"
        if att.proto is not None and att.proto.junk_bytes:
            error += f" ({att.proto.junk_bytes} bytes outside an MLLP frame dropped)"
        self._finish(att, Outcome.retry(error), reset=True)

    def _reply(self, proto: _MLLPClientProtocol, payload: bytes) -> None:
        att = self._current
        if att is None or att.proto is not proto:
            self._log.warning("mllp_sender.unexpected_ack", bytes=len(payload))
            proto.reset()
            return
        text = ack_text(payload)
        try:
            code, acked = parse_ack(payload)
        except InvalidAck as e:
            self._finish(att, Outcome.retry(f"invalid ACK: {e}", response=text), reset=True)
            return
        if att.expected and acked != att.expected:
            error = f"ACK for {acked[:64] or '(empty MSA-2)'} while waiting for {att.expected}"
            self._finish(att, Outcome.retry(error, code, text), reset=True)
            return
        if code in ("AA", "CA"):
            outcome = Outcome.ok(code, text)
        elif code in ("AE", "CE"):
            kind = Outcome.dead if self.on_error == "dead" else Outcome.retry
            outcome = kind(f"peer answered {code} (error)", code, text)
        else:
            kind = Outcome.retry if self.on_reject == "retry" else Outcome.dead
            outcome = kind(f"peer answered {code} (reject)", code, text)
        self._finish(att, outcome)

    def _frame_error(self, proto: _MLLPClientProtocol, reason: str, size: int) -> None:
        att = self._current
        if att is None or att.proto is not proto:
            self._log.warning("mllp_sender.frame_error", reason=reason, bytes=size)
            proto.reset()
            return
        detail = "empty frame" if reason == "empty_frame" else f"{reason} ({size} bytes)"
        self._finish(att, Outcome.retry(f"invalid ACK: {detail}", response=""), reset=True)

    def _finish(self, att: _InFlight, outcome: Outcome, reset: bool = False) -> None:
        if att.done:
            return
        att.done = True
        if att.timer is not None and att.timer.active():
            att.timer.cancel()
        att.timer = None
        if self._current is att:
            self._current = None
        if reset and att.proto is not None:
            att.proto.reset()
        fields = {"delivery": att.delivery.id, "control_id": att.expected, "code": outcome.code}
        if outcome.kind == "ok":
            self._log.debug("mllp_sender.delivered", **fields)
        else:
            self._log.warning("mllp_sender.failed", outcome=outcome.kind, error=outcome.error,
                              reset=reset, **fields)  # fmt: skip
        att.result.callback(outcome)


def _path(value: Any) -> str | None:
    return None if value is None else str(value)
