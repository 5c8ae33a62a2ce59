"""What every step kind shares: its declaration (kind, config spec, example), the
per-message context it runs in, and the errors it raises.

A step kind is a class with ``kind``, ``spec`` (declared once: it validates YAML, prints
``switchboard docs`` and feeds the JSON Schema) and ``run(message, run_ctx)``, built as
``cls(conf, ctx)`` (engine.context.Context: base dir, tables, metrics...). engine.components
registers the built-in kinds. Building a step (importing a function, loading a table or a
stylesheet) may fail: that is a config error with the step's location, reported by
``switchboard check`` and refused at start and reload.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from engine.hl7.ack import AckError
from engine.hl7.message import Message


class StepBuildError(Exception):
    """A step's config is valid YAML but cannot be used (missing table, bad function...).

    ``key`` names the option at fault, for the error location."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


class StepError(Exception):
    """A step failed on a message. ``errors`` become ERR repetitions (validate)."""

    def __init__(self, reason: str, errors: list[AckError] | None = None, code: int = 207):
        super().__init__(reason)
        self.reason = reason
        self.errors = errors or []
        self.code = code


@dataclass
class RunContext:
    """One message going through one channel."""

    channel: str
    listener: str = ""
    message_id: int | None = None
    flags: list[str] = field(default_factory=list)
    alerts: set[str] = field(default_factory=set)  # destinations a flag step switched on
    meta: dict[str, Any] = field(default_factory=dict)  # free for python steps
    options: dict[str, Any] = field(default_factory=dict)  # the python step's options
    step: int = 0  # 1-based number of the step running
    step_kind: str = ""


class Step:
    kind: ClassVar[str]
    spec: ClassVar[Any]
    example: ClassVar[str] = ""

    def __init__(self, config: Any, ctx: Any):
        self.config = config  # the settings its spec validated
        self.ctx = ctx  # engine.context.Context

    def run(self, message: Message, ctx: RunContext) -> bool | None:
        """Change ``message`` in place. Return False to filter the message out."""
        raise NotImplementedError


def step_kind(kind: str, spec: Any, example: str = ""):
    """Class decorator: a step kind's name, config spec and example (engine.components
    registers the class)."""

    def declare(cls: type[Step]) -> type[Step]:
        cls.kind = kind
        cls.spec = spec
        cls.example = example
        return cls

    return declare
