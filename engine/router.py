"""Route matching: which channels a message goes to.

Matches on listener, MSH-9.1 (type) and MSH-9.2 (trigger), never MSH-9.3 (senders disagree
on it), sending application and facility (first components), version, processing id, and a
``when`` condition on any field. Header keys are read from the lazy MSH view; the message is
parsed only when a route with ``when`` is reached.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from engine.conditions import Predicate, compile_condition
from engine.hl7.header import Header
from engine.hl7.message import Message

MATCH_KEYS = (
    "listener",
    "type",
    "trigger",
    "sending_application",
    "sending_facility",
    "version",
    "processing_id",
)


def _header_value(header: Header, key: str) -> str:
    if key == "type":
        return header.message_type
    if key == "trigger":
        return header.trigger
    if key == "sending_application":
        return header.component(3, 1)
    if key == "sending_facility":
        return header.component(4, 1)
    if key == "version":
        return header.version
    if key == "processing_id":
        return header.processing_id
    raise KeyError(key)


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    conditions: tuple[tuple[str, frozenset[str]], ...]
    when: Predicate | None
    to: tuple[str, ...]

    def matches(self, listener: str, header: Header, message: Callable[[], Message]) -> bool:
        for key, allowed in self.conditions:
            value = listener if key == "listener" else _header_value(header, key)
            if value not in allowed:
                return False
        return self.when is None or self.when(message())


class Router:
    def __init__(self, routes: list):
        """Routes from their validated settings (engine.config.routes_spec.ROUTE)."""
        self.routes = tuple(
            Route(
                name=r.name or f"route {i + 1}",
                conditions=tuple(
                    (k, frozenset(v if isinstance(v, list) else [v]))
                    for k in MATCH_KEYS
                    if (v := getattr(r.match, k)) is not None
                ),
                when=compile_condition(r.match.when) if r.match.when else None,
                to=tuple(r.to if isinstance(r.to, list) else [r.to]),
            )
            for i, r in enumerate(routes)
        )

    def channels_for(
        self, listener: str, header: Header, message: Callable[[], Message] | None = None
    ) -> list[str]:
        """Channel names in route order, each once. ``message`` builds the parsed message,
        needed only by routes with ``when``."""
        out: list[str] = []
        for route in self.routes:
            if route.when is not None and message is None:
                continue
            if route.matches(listener, header, message):
                for name in route.to:
                    if name not in out:
                        out.append(name)
        return out
