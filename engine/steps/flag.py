"""flag: mark messages with abnormal results, so alert destinations (flagged_only) get them.

Each OBX is checked against the rules whose ``code`` (and ``system``, when given) is its
OBX-3 code, in components 1/3 or, after a translate with keep_original, 4/6. A numeric
OBX-5 strictly above ``above`` or below ``below`` raises the rule's flag. OBX-5 is numeric
when it is a plain decimal number (whatever OBX-2 says) or a structured numeric (SN) whose
comparator is honoured: ``>^200`` is above 200, ``<^5`` below 5; ranges and ratios
(``^10^-^20``) and text are skipped. ``abnormal_flags`` raise ``flag`` for any OBX whose
OBX-8 holds one of them. Results with status (OBX-11) D (deleted), W (wrong) or X (cannot
be obtained) are never flagged.

Flags are added to ``ctx.flags`` (distinct names, first seen first) and counted in
switchboard_flagged_messages{channel, flag}, once per message and flag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from yaml.nodes import MappingNode

from engine.config import Field, Spec
from engine.config.fieldtypes import ListOf
from engine.config.routes_spec import NAME_HINT, NAME_PATTERN
from engine.config.scalars import Bool, Float, String
from engine.config.spec import Nested
from engine.config.validation import Ctx
from engine.hl7.path import PathError
from engine.steps.base import Step, StepError, step_kind

SKIPPED_STATUSES = frozenset({"D", "W", "X"})
_NUMBER = re.compile(r"(?P<cmp><=|>=|<|>|=)?\s*(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+))")


def _finish_rule(value: dict[str, Any], node: MappingNode, ctx: Ctx, where: str) -> None:
    above, below = value.get("above"), value.get("below")
    if above is None and below is None:
        ctx.error(node, f"{where} needs 'above' or 'below' (or both)")
    elif isinstance(above, float) and isinstance(below, float) and below > above:
        ctx.error(
            node,
            f"{where} flags every value: 'below' ({below:g}) is over 'above' ({above:g}); "
            "a value is flagged when it is above 'above' or below 'below'",
        )


RULE = Spec(
    "rule",
    "When a result is abnormal for one test: above or below limits set by clinicians.",
    (
        Field("code", String(), "The test: OBX-3 component 1 (or 4, the alternate code).",
              required=True, example="2345-7"),
        Field("system", String(), "Its coding system (OBX-3.3, or 3.6 with the alternate "
              "code); any when not given.", example="LN"),
        Field("above", Float(), "Flag values strictly above this.", example=200),
        Field("below", Float(), "Flag values strictly below this.", example=70),
        Field("flag", String(NAME_PATTERN, NAME_HINT), "The flag raised.",
              default_doc="the step's flag", example="critical"),
    ),
    finish=_finish_rule,
)  # fmt: skip


def _finish(value: dict[str, Any], node: MappingNode, ctx: Ctx, where: str) -> None:
    if value.get("rules") == [] and value.get("abnormal_flags") == []:
        ctx.error(node, f"{where} needs 'rules' or 'abnormal_flags'")


FLAG = Spec(
    "flag",
    "Flag messages with abnormal results (by numeric limits per test, or by the abnormal "
    "flags in OBX-8) so that destinations with flagged_only: true receive them.",
    (
        Field("rules", ListOf(Nested(RULE)), "Limits per test.", default=[],
              example=[{"code": "2823-3", "system": "LN", "above": 6.0, "below": 3.0,
                        "flag": "critical-potassium"}]),
        Field("abnormal_flags", ListOf(String()), "OBX-8 values that flag a result by "
              "themselves.", default=[], example=["HH", "LL", "AA", "C"]),
        Field("flag", String(NAME_PATTERN, NAME_HINT), "The flag raised by abnormal_flags "
              "and by rules without their own.", default="abnormal"),
        Field("set_abnormal_flag", Bool(), "Write H or L into OBX-8 of a result flagged by "
              "a rule when OBX-8 is empty.", default=False),
    ),
    finish=_finish,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Rule:
    code: str
    system: str | None
    above: float | None
    below: float | None
    flag: str

    def check(self, value: tuple[str, float]) -> str | None:
        """'H' when the value is certainly above, 'L' when certainly below, else None."""
        cmp, num = value
        if self.above is not None and (
            (cmp in ("", "=", ">=") and num > self.above) or (cmp == ">" and num >= self.above)
        ):
            return "H"
        if self.below is not None and (
            (cmp in ("", "=", "<=") and num < self.below) or (cmp == "<" and num <= self.below)
        ):
            return "L"
        return None


def numeric(message, obx: str) -> tuple[str, float] | None:
    """(comparator, number) of OBX-5, or None when it is not one number."""
    if message.get(f"{obx}-2") == "SN":
        parts = [message.get(f"{obx}-5.{c}", "") for c in (1, 2, 3, 4)]
        if parts[2] or parts[3]:  # a range or a ratio
            return None
        text = f"{parts[0]}{parts[1]}"
    else:
        text = message.get(f"{obx}-5", "") or ""
    m = _NUMBER.fullmatch(text.strip())
    if m is None:
        return None
    return m.group("cmp") or "", float(m.group("num"))


@step_kind(
    "flag",
    FLAG,
    example="flag: {rules: [{code: 2345-7, above: 200, below: 50}], abnormal_flags: [HH, LL]}",
)
class Flag(Step):
    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.flag = config.flag
        self.rules: dict[str, list[Rule]] = {}
        self.order: dict[Rule, int] = {}
        for item in config.rules:
            rule = Rule(item.code, item.system, item.above, item.below,
                        item.flag or self.flag)  # fmt: skip
            self.rules.setdefault(rule.code, []).append(rule)
            self.order.setdefault(rule, len(self.order))
        self.abnormal_flags = frozenset(config.abnormal_flags)
        self.set_abnormal_flag = config.set_abnormal_flag

    def run(self, message, ctx):
        raised: list[str] = []
        for occ in range(1, len(message.segment_indexes("OBX")) + 1):
            for name in self._check(message, f"OBX[{occ}]"):
                if name not in raised:
                    raised.append(name)
        metrics = self.ctx.metrics
        for name in raised:
            if name in ctx.flags:
                continue
            ctx.flags.append(name)
            if metrics is not None:
                metrics.flagged.labels(ctx.channel, name).inc()

    def _rules_for(self, message, obx: str) -> list[Rule]:
        """The rules for the OBX's code or alternate code, in the order they are written."""
        found: list[Rule] = []
        for code_at, system_at in ((1, 3), (4, 6)):
            code = message.get(f"{obx}-3.{code_at}")
            if not code or code not in self.rules:
                continue
            system = message.get(f"{obx}-3.{system_at}", "")
            for rule in self.rules[code]:
                if (rule.system is None or rule.system == system) and rule not in found:
                    found.append(rule)
        return sorted(found, key=self.order.__getitem__)

    def _check(self, message, obx: str) -> list[str]:
        if (message.get(f"{obx}-11") or "").strip() in SKIPPED_STATUSES:
            return []
        names: list[str] = []
        direction = None
        rules = self._rules_for(message, obx)
        value = numeric(message, obx) if rules else None
        if value is not None:
            for rule in rules:
                hit = rule.check(value)
                if hit:
                    direction = direction or hit
                    names.append(rule.flag)
        marks = [v.strip() for v in message.get_all(f"{obx}-8[*]")]
        if self.abnormal_flags.intersection(marks):
            names.append(self.flag)
        if direction and self.set_abnormal_flag and not any(marks):
            try:
                message.set(f"{obx}-8", direction)
            except PathError as exc:
                raise StepError(str(exc)) from None
        return names


__all__ = ["FLAG", "Flag", "Rule", "numeric"]
