"""structlog set-up: readable lines on a terminal, JSON lines otherwise.

Never log PHI at INFO or above: ids (message id, MSH-10), codes, listener names and peer
addresses only; no PID fields, no message bodies.
"""

from __future__ import annotations

import logging
import sys

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}  # fmt: skip


def configure_logging(level: str = "info", fmt: str = "auto", stream=None) -> None:
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if getattr(stream, "isatty", lambda: False)() else "json"
    renderer = (
        structlog.dev.ConsoleRenderer(colors=getattr(stream, "isatty", lambda: False)())
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )
    _route_twisted_logs(level)


def _route_twisted_logs(level: str) -> None:
    """Send Twisted's own log events through structlog (at debug, errors at error)."""
    from twisted.logger import LogLevel, formatEvent, globalLogBeginner

    log = structlog.get_logger("twisted")

    def observer(event: dict) -> None:
        lvl = event.get("log_level")
        failure = event.get("log_failure")
        text = formatEvent(event)
        if failure is not None:
            log.error(text, exception=failure.getTraceback())
        elif lvl in (LogLevel.error, LogLevel.critical):
            log.error(text)
        elif lvl == LogLevel.warn:
            log.warning(text)
        else:
            log.debug(text)

    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False, discardBuffer=True)


def get_logger(name: str = "switchboard", **bind):
    return structlog.get_logger(name).bind(**bind) if bind else structlog.get_logger(name)
