"""Docs text and JSON Schema of the config files, from the same specs that validate them."""

from __future__ import annotations

from typing import Any, Literal

from .channel_spec import CHANNEL, destination_spec
from .registry import Registry, using
from .routes_spec import ROUTES
from .spec import JSON_SCHEMA_DIALECT, Spec, describe, json_schema

_TITLES = {"routes": "Switchboard routes.yaml", "channel": "Switchboard channel file"}


def to_json_schema(kind: Literal["routes", "channel"], registry: Registry) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of routes.yaml or of a channel file, for editors, with
    the registry's source, step and destination kinds."""
    if kind not in _TITLES:
        raise ValueError(f"unknown schema kind {kind!r}; expected 'routes' or 'channel'")
    with using(registry):
        schema = json_schema(ROUTES if kind == "routes" else CHANNEL)
    return {"$schema": JSON_SCHEMA_DIALECT, **schema, "title": _TITLES[kind]}


def describe_all(registry: Registry) -> str:
    """The whole reference: routes.yaml, channel files, then every registered step and
    destination kind."""
    with using(registry):
        parts = [describe(ROUTES), describe(CHANNEL)]
    for kind, spec in sorted(registry.specs("step").items()):
        title = f"step: {kind}"
        if isinstance(spec, Spec):
            parts.append(describe(spec, title))
        else:
            parts.append(f"{title}\n{'=' * len(title)}\n  - {kind}: {spec.doc()}")
    for kind, spec in sorted(registry.specs("destination").items()):
        parts.append(describe(destination_spec(kind, spec), f"destination: {kind}"))
    return "\n\n\n".join(parts) + "\n"
