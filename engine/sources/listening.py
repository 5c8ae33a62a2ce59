"""A listener on a Twisted server endpoint that binds first and drains on stop.

Shared by the MLLP source and the admin listener: the address is bound in
``privilegedStartService`` (before the store or delivery start, see engine.lifecycle), a
failure is a :class:`~engine.lifecycle.ListenError` naming the listener, and a stop waits
(bounded) until every ACK owed has been written.
"""

from __future__ import annotations

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.error import CannotListenError

from engine.lifecycle import ListenError
from engine.logging import get_logger

log = get_logger("app")


class ListenerService(StreamServerEndpointService):
    _raiseSynchronously = True

    def __init__(self, endpoint, factory, description: str, *, drain=None, label=None,
                 tls_creator=None):  # fmt: skip
        super().__init__(endpoint, factory)
        self.description = description
        self.drain = drain  # on stop: a callable whose Deferred fires once the owed is written
        self.label = label  # how errors name it; default "listener '<name>'"
        self.tls_creator = tls_creator  # engine.tls.ReloadableServerTLS, or None

    def privilegedStartService(self) -> None:
        """Bind the address (at once: every endpoint here listens synchronously)."""
        try:
            super().privilegedStartService()
        except CannotListenError as exc:
            self._waitingForPort = None
            raise ListenError(self.label or f"listener '{self.name}'", self.description,
                              exc) from None  # fmt: skip
        self._waitingForPort.addCallback(self._listening)

    def stopService(self):
        """Stop accepting, then wait (bounded) until every ACK owed has been written."""
        if self._waitingForPort is None:  # never started listening
            self.running = False
            return None
        d = super().stopService()
        if self.drain is not None:
            drained = self.drain()
            d.addCallback(lambda _: drained)
        return d

    def _listening(self, port):
        addr = port.getHost()
        self.address = addr
        log.info("listening", listener=self.name, endpoint=self.description,
                 port=getattr(addr, "port", None))  # fmt: skip
        return port

    @property
    def port(self) -> int:
        """The TCP port bound (port 0 configs, tests)."""
        return self._waitingForPort.result.getHost().port
