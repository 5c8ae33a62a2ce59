"""Where step and destination kinds register their config specs.

A step module calls `register_step("translate", TRANSLATE_SPEC)`; a destination module calls
`register_destination("mllp", MLLP_SPEC)`, whose spec declares the kind key itself (`mllp:`)
and its options (`name` is added by the channel spec). While nothing is registered for steps
(or for destinations), their contents are accepted as written, unvalidated.
"""

from __future__ import annotations

from .spec import Spec
from .validation import FieldType

StepSpec = Spec | FieldType


class Registry:
    """Step and destination specs by kind."""

    def __init__(self) -> None:
        self.steps: dict[str, StepSpec] = {}
        self.destinations: dict[str, Spec] = {}

    def register_step(self, kind: str, spec: StepSpec) -> None:
        """Register a step kind. `spec` is a Spec (a mapping, optionally with a shorthand) or
        any field type, e.g. `FreeMapping()` for `set: {MSH-5: EPIC}`."""
        _register(self.steps, "step", kind, spec)

    def register_destination(self, kind: str, spec: Spec) -> None:
        """Register a destination kind; `spec` must have a field named `kind`."""
        if spec.field(kind) is None:
            raise ValueError(f"destination spec for '{kind}' needs a field named '{kind}'")
        _register(self.destinations, "destination", kind, spec)


def _register(table: dict, what: str, kind: str, spec: object) -> None:
    existing = table.get(kind)
    if existing is not None and existing is not spec:
        raise ValueError(f"{what} kind '{kind}' is already registered")
    table[kind] = spec


default_registry = Registry()


def register_step(kind: str, spec: StepSpec) -> None:
    """Register a step kind in the default registry."""
    default_registry.register_step(kind, spec)


def register_destination(kind: str, spec: Spec) -> None:
    """Register a destination kind in the default registry."""
    default_registry.register_destination(kind, spec)
