"""Where step and destination kinds register their config specs.

A step module calls `register_step("translate", TRANSLATE_SPEC)`; a destination module calls
`register_destination("mllp", MLLP_SPEC)`, whose spec declares the kind key itself (`mllp:`)
and its options (`name` is added by the channel spec). While nothing is registered for steps
(or for destinations), their contents are accepted as written, unvalidated.

`add_check(fn)` adds a check that needs more than a spec (building the channels: functions
import, tables load; encryption keys load). `load_config` runs every check in the same pass
as the validation, on whatever validated, so its problems come with all the others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import Problem
from .spec import Spec
from .validation import FieldType

StepSpec = Spec | FieldType
Check = Callable[[Any], list[Problem]]


class Registry:
    """Step and destination specs by kind, and the checks beyond the specs."""

    def __init__(self) -> None:
        self.steps: dict[str, StepSpec] = {}
        self.destinations: dict[str, Spec] = {}
        self.checks: list[Check] = []

    def add_check(self, check: Check) -> None:
        """Run `check(config)` on every load. The config it gets may have failed validation
        in places: each value that did is INVALID (see `validation.has_invalid`), and the
        check leaves it alone (its problem is reported already)."""
        if check not in self.checks:
            self.checks.append(check)

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
