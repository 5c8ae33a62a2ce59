"""How the engine's service tree starts and stops.

:class:`OrderedMultiService` starts its children in order and stops them in reverse, each
after the one started after it has stopped: what feeds a service stops before it. Twisted's
``MultiService`` stops every child at once, which let the store close while delivery workers
still had outcomes to record.
"""

from __future__ import annotations

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
