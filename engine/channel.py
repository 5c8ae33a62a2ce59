"""Channels: a message in, zero or more rendered outputs out, no I/O.

A channel runs its steps in order on a copy of the message; then, per destination, that
destination's own steps and its render. A filter ends the run as ``filtered``; a step error
ends it as ``errored`` with the step's number, kind and reason (the message is kept, nothing
is lost). Building a channel (functions, tables, stylesheets) happens at load and reload,
where a problem is a config error with its file:line:column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.conditions import compile_condition
from engine.config.errors import Problem
from engine.config.validation import has_invalid
from engine.destinations.base import Destination, Rendered
from engine.hl7.ack import AckError
from engine.hl7.message import Message
from engine.steps import RunContext, Step, StepBuildError, StepError

PASSED, FILTERED, ERRORED = "passed", "filtered", "errored"


@dataclass
class Output:
    destination: str
    kind: str
    payload: bytes
    content_type: str


@dataclass
class ChannelResult:
    channel: str
    status: str
    outputs: list[Output] = field(default_factory=list)
    step: int | None = None  # where it was filtered or failed (1-based); None: passed
    step_kind: str | None = None
    reason: str | None = None
    errors: list[AckError] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    message: Message | None = None  # the message after the channel's own steps
    by_destination: dict[str, Message] = field(default_factory=dict)


@dataclass
class _Target:
    destination: Destination
    steps: list[Step]
    when: Any
    flagged_only: bool


class Channel:
    def __init__(self, name: str, steps: list[Step], targets: list[_Target]):
        self.name = name
        self.steps = steps
        self.targets = targets
        self.empty = not steps and not targets  # passes without looking at the message

    def run(self, message: Message, listener: str = "", message_id: int | None = None,
            ctx: RunContext | None = None) -> ChannelResult:  # fmt: skip
        """Run on a copy of ``message`` (the caller's copy is never changed)."""
        if self.empty:
            return ChannelResult(self.name, PASSED, message=message)
        ctx = ctx or RunContext(channel=self.name, listener=listener, message_id=message_id)
        msg = message.copy()
        result = ChannelResult(self.name, PASSED, message=msg, flags=ctx.flags)
        if not self._run_steps(self.steps, msg, ctx, result, prefix=""):
            return result
        for target in self.targets:
            dest = target.destination
            if target.flagged_only and not ctx.flags:
                continue
            if target.when is not None and not target.when(msg):
                continue
            out = msg.copy() if target.steps else msg
            if target.steps and not self._run_steps(
                target.steps, out, ctx, result, prefix=f"{dest.name} "
            ):
                if result.status == ERRORED:
                    result.outputs = []
                    return result
                result.status = PASSED  # filtered for this destination only
                result.step = result.step_kind = result.reason = None
                continue
            try:
                rendered: Rendered = dest.render(out)
            except Exception as exc:  # e.g. no FHIR mapping for this message: keep it, errored
                result.status = ERRORED
                result.step, result.step_kind = None, f"{dest.name} render"
                result.reason = f"{type(exc).__name__}: {exc}" if not isinstance(
                    exc, ValueError) else str(exc)  # fmt: skip
                result.outputs = []
                return result
            result.outputs.append(Output(dest.name, dest.kind, rendered.payload,
                                         rendered.content_type))  # fmt: skip
            result.by_destination[dest.name] = out
        return result

    def _run_steps(self, steps, msg, ctx, result, prefix: str) -> bool:
        for number, step in enumerate(steps, 1):
            ctx.step, ctx.step_kind = number, step.kind
            try:
                keep = step.run(msg, ctx)
            except StepError as exc:
                result.status = ERRORED
                result.step, result.step_kind = number, prefix + step.kind
                result.reason, result.errors = exc.reason, exc.errors
                return False
            except Exception as exc:  # a bug in a step must not lose the message
                result.status = ERRORED
                result.step, result.step_kind = number, prefix + step.kind
                result.reason = f"{type(exc).__name__}: {exc}"
                return False
            if keep is False:
                result.status = FILTERED
                result.step, result.step_kind = number, prefix + step.kind
                return False
        return True


def _build_steps(specs, ctx, config, base_path, problems) -> list[Step]:
    steps = []
    for index, step in enumerate(specs or []):
        if has_invalid(step):
            continue  # validation reported it
        try:
            steps.append(ctx.registry.cls("step", step.kind)(step.config, ctx))
        except StepBuildError as exc:
            path = (*base_path, index, "config")
            if exc.key:
                path = (*path, exc.key)
            problems.append(config.problem(path, f"step {index + 1} ({step.kind}): {exc}"))
    return steps


def build_channels(config, ctx, problems: list[Problem]) -> dict[str, Channel]:
    """Build every channel, step and destination of ``config`` that validated (the rest was
    reported by validation) with ``ctx`` (engine.context.Context: registry, base dir,
    tables, metrics, fresh_modules); a build problem goes to ``problems`` at its
    file:line:column."""
    channels: dict[str, Channel] = {}
    for name, ch in config.channels.items():
        steps = _build_steps(ch.steps, ctx, config, ("channels", name, "steps"), problems)
        targets = []
        for d_index, dcfg in enumerate(ch.destinations or []):
            if has_invalid(dcfg):
                continue
            d_steps = _build_steps(
                dcfg.steps, ctx, config,
                ("channels", name, "destinations", d_index, "steps"), problems,
            )  # fmt: skip
            when = compile_condition(dcfg.when) if dcfg.when else None
            try:
                destination = ctx.registry.cls("destination", dcfg.kind)(dcfg, ctx)
            except ValueError as exc:  # e.g. a template with a bad field path
                path = ("channels", name, "destinations", d_index)
                problems.append(config.problem(path, f"destination '{dcfg.name}': {exc}"))
                continue
            targets.append(_Target(destination, d_steps, when, dcfg.flagged_only))
        channels[name] = Channel(name, steps, targets)
    return channels
