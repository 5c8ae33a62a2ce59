"""Route matching on header fields: which channels a message goes to.

Matches on listener, MSH-9.1 (type) and MSH-9.2 (trigger), never MSH-9.3 (senders disagree
on it), sending application and facility (first components), version and processing id.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.hl7.header import Header

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
    to: tuple[str, ...]

    def matches(self, listener: str, header: Header) -> bool:
        for key, allowed in self.conditions:
            value = listener if key == "listener" else _header_value(header, key)
            if value not in allowed:
                return False
        return True


class Router:
    def __init__(self, routes: list[dict]):
        self.routes = tuple(
            Route(
                name=r.get("name") or f"route {i + 1}",
                conditions=tuple(
                    (k, frozenset(v if isinstance(v, list) else [v]))
                    for k, v in (r.get("match") or {}).items()
                    if k in MATCH_KEYS and v is not None
                ),
                to=tuple(r["to"] if isinstance(r["to"], list) else [r["to"]]),
            )
            for i, r in enumerate(routes)
        )

    def channels_for(self, listener: str, header: Header) -> list[str]:
        """Channel names in route order, each once."""
        out: list[str] = []
        for route in self.routes:
            if route.matches(listener, header):
                for name in route.to:
                    if name not in out:
                        out.append(name)
        return out
