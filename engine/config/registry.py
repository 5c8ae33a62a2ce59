"""The kinds a config may use: one registry of (role, kind, spec, class).

A role is ``step`` (`- translate: {...}` in a channel), ``destination`` (`mllp:`, `fhir:`...
in a channel's destinations) or ``source`` (`mllp:`, `directory:` in a listener). Its spec
validates the YAML, prints `switchboard docs` and feeds the JSON Schema; its class builds the
component (``cls(conf, ctx)``, engine.context). The engine's registry is made in one place,
engine.components; this package only reads it, so it imports nothing of the engine.

A destination's or a source's spec declares its kind key itself (`mllp:`) and its options;
`name` is added by the channel spec, and the listener settings every source shares by the
routes spec. While a role has nothing registered its values are accepted as written.

Field types that need the engine's knowledge (an HL7 field path, a condition on a message)
are registered by their owners too (`add_type`) and named in a spec with `Registered`.

`add_check(fn)` adds a check beyond the specs (e.g. encryption keys load): `load_config` runs
every check in the same pass as the validation, on whatever validated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from .errors import Problem
from .spec import Spec
from .validation import FieldType

ROLES = ("step", "destination", "source")
Check = Callable[[Any], list[Problem]]


@dataclass(frozen=True)
class Component:
    role: str
    kind: str
    spec: Spec | FieldType  # a step may take any field type (`set: {MSH-5: EPIC}`)
    cls: Any = None  # builds it: cls(conf, ctx)
    example: str = ""


class Registry:
    """Components by role and kind, and the checks beyond the specs."""

    def __init__(self) -> None:
        self._components: dict[str, dict[str, Component]] = {role: {} for role in ROLES}
        self.checks: list[Check] = []
        self.types: dict[str, FieldType] = {}

    def add_type(self, name: str, field_type: FieldType) -> None:
        """A field type specs name with `Registered(name)` (e.g. "condition")."""
        self.types[name] = field_type

    def add(self, role: str, kind: str, spec: Spec | FieldType, cls: Any = None,
            example: str = "") -> Component:  # fmt: skip
        """Register a kind. A destination's or source's spec must have a field named after
        the kind (its key in the YAML); a step's may be any field type."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        if role != "step" and (not isinstance(spec, Spec) or spec.field(kind) is None):
            raise ValueError(f"{role} spec for '{kind}' needs a field named '{kind}'")
        table = self._components[role]
        existing = table.get(kind)
        if existing is not None and existing.spec is not spec:
            raise ValueError(f"{role} kind '{kind}' is already registered")
        table[kind] = component = Component(role, kind, spec, cls, example)
        return component

    def add_class(self, role: str, cls: Any) -> Component:
        """Register a class that declares its ``kind``, ``spec`` (and ``example``)."""
        return self.add(role, cls.kind, cls.spec, cls, getattr(cls, "example", ""))

    def add_check(self, check: Check) -> None:
        """Run `check(config)` on every load. The config it gets may have failed validation
        in places: each value that did is INVALID (see `validation.has_invalid`), and the
        check leaves it alone (its problem is reported already)."""
        if check not in self.checks:
            self.checks.append(check)

    def components(self, role: str) -> dict[str, Component]:
        return self._components[role]

    def specs(self, role: str) -> dict[str, Spec | FieldType]:
        return {kind: c.spec for kind, c in self._components[role].items()}

    def cls(self, role: str, kind: str) -> Any:
        return self._components[role][kind].cls


_current: ContextVar[Registry | None] = ContextVar("switchboard_registry", default=None)


def current() -> Registry | None:
    """The registry the specs are being read with (`using`), for JSON Schema and docs."""
    return _current.get()


@contextmanager
def using(registry: Registry | None) -> Iterator[Registry | None]:
    """Read the specs with `registry` inside the block (load, schema, docs)."""
    token = _current.set(registry)
    try:
        yield registry
    finally:
        _current.reset(token)


class Registered(FieldType):
    """A field type the registry in use supplies (`Registry.add_type`); with none, any value
    is accepted as written."""

    def __init__(self, type_name: str):
        self.type_name = type_name
        self.fallback = _AsWritten()

    def _type(self) -> FieldType:
        registry = current()
        found = registry.types.get(self.type_name) if registry is not None else None
        return found or self.fallback

    @property
    def name(self) -> str:  # type: ignore[override]
        return self._type().name

    def check(self, node, ctx, at):
        return self._type().check(node, ctx, at)

    def json_schema(self) -> dict[str, Any]:
        return self._type().json_schema()

    def doc(self) -> str:
        return self._type().doc()

    def nested_specs(self) -> list[Any]:
        return self._type().nested_specs()


class _AsWritten(FieldType):
    """Any mapping, taken as written (no registry to say more)."""

    name = "mapping"

    def check(self, node, ctx, at):
        from yaml.constructor import SafeConstructor
        from yaml.nodes import MappingNode

        if not isinstance(node, MappingNode):
            return self.wrong_type(node, ctx, at)
        ctx.record_tree(at.path, node)
        return SafeConstructor().construct_object(node, deep=True)

    def json_schema(self) -> dict[str, Any]:
        return {"type": "object"}
