"""map (an inline value map) and replace (a regular expression) on one field."""

from __future__ import annotations

import re

from engine.config import Field, Spec
from engine.config.fieldtypes import FreeMapping
from engine.config.scalars import Enum, Int, String
from engine.hl7.fieldtypes import FieldPath, Regex
from engine.hl7.path import PathError, parse_path
from engine.steps.base import Step, StepError, step_kind

MAP = Spec(
    "map",
    "Replace a field's value through an inline table. With [*] every value is mapped.",
    (
        Field("field", FieldPath(), "The field to map.", required=True, example="PV1-2"),
        Field("values", FreeMapping(), "From value: to value.", required=True,
              example={"I": "IP", "O": "OP"}),
        Field("on_missing", Enum("keep", "default", "error"),
              "A value not in the map: keep it, write `default`, or fail the message.",
              default="keep"),
        Field("default", String(), "The value written for unmapped values (on_missing: default).",
              default=""),
    ),
)  # fmt: skip


@step_kind("map", MAP, example="map: {field: PV1-2, values: {I: IP, O: OP, E: EMER}}")
class Map(Step):
    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.path = parse_path(config.field)
        self.values = {str(k): "" if v is None else str(v) for k, v in config.values.items()}

    def run(self, message, ctx):
        for path in message.occurrences(self.path):
            value = message.get(path)
            if value is None or value == "":
                continue
            new = self.values.get(value)
            if new is None:
                mode = self.config.on_missing
                if mode == "keep":
                    continue
                if mode == "error":
                    raise StepError(f"{path}: value {value!r} is not in the map")
                new = self.config.default
            message.set(path, new)


REPLACE = Spec(
    "replace",
    "Regular-expression substitution on a field's decoded value (Python re syntax; \\1 in "
    "`with` refers to a group).",
    (
        Field("field", FieldPath(), "The field to change.", required=True, example="PID-13.1"),
        Field("pattern", Regex(), "What to find.", required=True, example=r"[^0-9]"),
        Field("with", String(), "What to put instead.", default=""),
        Field("count", Int(min=0), "How many replacements at most (0: all).", default=0),
    ),
)


@step_kind("replace", REPLACE, example=r"replace: {field: PID-13.1, pattern: '[^0-9]', with: ''}")
class Replace(Step):
    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.path = parse_path(config.field)
        self.rx = re.compile(config.pattern)

    def run(self, message, ctx):
        for path in message.occurrences(self.path):
            value = message.get(path)
            if not value:
                continue
            try:
                new = self.rx.sub(self.config.with_, value, count=self.config.count)
            except (re.error, IndexError) as exc:
                raise StepError(f"replace on {path}: {exc}") from None
            if new != value:
                try:
                    message.set(path, new)
                except PathError as exc:
                    raise StepError(str(exc)) from None
