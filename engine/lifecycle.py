"""How the engine's service tree starts and stops.

Every listener binds its address first (``privilegedStartService``), before the store or
delivery start: an address that cannot be had fails the start with a :class:`ListenError`
and leaves no trace.

:func:`install_signal_handlers`: SIGINT and SIGTERM stop the engine, SIGHUP reloads it,
installed explicitly. A process started in the background by a script inherits SIGINT
ignored (and SIGHUP under nohup); Python and Twisted keep an inherited ignore, so Ctrl-C did
nothing.

:class:`OrderedMultiService` starts its children in order and stops them in reverse, each
after the one started after it has stopped: what feeds a service stops before it. Twisted's
``MultiService`` stops every child at once, which let the store close while delivery workers
still had outcomes to record.
"""

from __future__ import annotations

import errno
import signal
from collections.abc import Callable

from twisted.application.service import MultiService, Service
from twisted.internet.defer import inlineCallbacks, maybeDeferred

from engine.logging import get_logger

log = get_logger("app")


class OrderedMultiService(MultiService):
    """A MultiService whose children stop one after another, last started first."""

    @inlineCallbacks
    def stopService(self):
        Service.stopService(self)
        for service in reversed(list(self)):
            try:
                yield maybeDeferred(service.stopService)
            except Exception as exc:  # one child's failure must not keep the rest running
                log.error("stopping failed", service=service.name, error=str(exc)[:300])
            log.debug("stopped", service=service.name)


class ListenError(Exception):
    """A listener could not bind its address; ``hint`` says what to do about it."""

    def __init__(self, label: str, address: str, cause: BaseException):
        os_error = getattr(cause, "socketError", None) or cause
        reason = getattr(os_error, "strerror", None) or str(os_error)
        super().__init__(f"{label} cannot listen on {address}: {reason}")
        self.label, self.address = label, address
        code = getattr(os_error, "errno", None)
        if code == errno.EADDRINUSE:
            self.hint = (
                "Another program (perhaps another switchboard engine) is using that address: "
                f"stop it, or give {label} another address in the config."
            )
        elif code == errno.EACCES:
            self.hint = (
                "Ports below 1024 need privileges: use a port above 1023, or grant the engine "
                "CAP_NET_BIND_SERVICE."
            )
        elif code == errno.EADDRNOTAVAIL:
            self.hint = (
                f"That interface address is not on this machine: fix {label}'s address in "
                "the config."
            )
        else:
            self.hint = f"Check {label}'s address in the config."


def install_signal_handlers(reactor, stop: Callable[[str], None], reload: Callable) -> None:
    """SIGINT and SIGTERM call ``stop(signal name)``, SIGHUP calls ``reload()``, on the
    reactor thread, whatever the process inherited. Call it before the reactor runs (a
    signal during start-up is acted on once it runs) and again once it runs (Twisted sets
    its own SIGTERM handler as it starts)."""

    def on_stop(signum, _frame) -> None:
        reactor.callFromThread(stop, signal.Signals(signum).name)

    def on_reload(_signum, _frame) -> None:
        reactor.callFromThread(reload)

    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGHUP, on_reload)
