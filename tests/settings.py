"""Validated settings and contexts for tests that build engine parts by hand: the same specs
and registry the engine uses (engine.components), so defaults come from the specs only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.components import REGISTRY
from engine.config.channel_spec import destination_spec
from engine.config.registry import using
from engine.config.routes_spec import ROUTE, TLS, listener_spec
from engine.config.store_spec import STORE_OPTIONS
from engine.context import Context


def listener(base_dir: Path | str = ".", **values: Any):
    """A listener's settings; an MLLP one on tcp:0 unless a source key is given."""
    if "mllp" not in values and "directory" not in values:
        values = {"mllp": "tcp:0:interface=127.0.0.1", **values}
    values.setdefault("name", "test")
    with using(REGISTRY):
        return listener_spec(REGISTRY.specs("source")).build(values, base_dir)


def destination(kind: str, base_dir: Path | str = ".", **values: Any):
    """A channel destination's settings (``name`` defaults to the kind)."""
    values.setdefault("name", kind)
    with using(REGISTRY):
        return destination_spec(kind, REGISTRY.specs("destination")[kind]).build(values, base_dir)


def route(**values: Any):
    with using(REGISTRY):
        return ROUTE.build(values)


def store_options(**values: Any):
    return STORE_OPTIONS.build(values)


def tls(base_dir: Path | str = ".", **values: Any):
    return TLS.build(values, base_dir)


def context(**kw: Any) -> Context:
    """A Context with the engine's registry (tests pass reactor, clock, metrics...)."""
    kw.setdefault("registry", REGISTRY)
    return Context(**kw)


def config_registry(steps: bool = False, destinations: bool = False):
    """A registry for tests of the config layer: the engine's source kinds and condition type
    (listeners and routes validate fully), and its steps or destinations only when asked
    (otherwise channel contents are taken as written)."""
    from engine.config import Registry

    registry = Registry()
    roles = ["source", *(["step"] if steps else []), *(["destination"] if destinations else [])]
    for role in roles:
        for c in REGISTRY.components(role).values():
            registry.add(role, c.kind, c.spec, c.cls, c.example)
    registry.types.update(REGISTRY.types)
    return registry


def listener_fields() -> list[str]:
    """The listener keys, in the order the docs and the schema show them."""
    return listener_spec(REGISTRY.specs("source")).keys
