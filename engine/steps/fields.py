"""set, copy, move and delete: the field-level steps."""

from __future__ import annotations

from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode

from engine.config import Field, Spec
from engine.config.fieldtypes import StrOrList
from engine.config.scalars import Bool, String, scalar_value
from engine.config.validation import INVALID, At, Ctx, FieldType, is_null, node_kind
from engine.hl7.fieldtypes import FieldPath
from engine.hl7.path import ALL, PathError, parse_path
from engine.steps.base import Step, StepError, step_kind


class Assignments(FieldType):
    """`{PATH: value}`; a value may be `{value: TEXT, raw: true}` to write delimiters as such."""

    name = "mapping of field path to value"

    def check(self, node: Node, ctx: Ctx, at: At) -> Any:
        if not isinstance(node, MappingNode) or not node.value:
            return self.wrong_type(node, ctx, at, " (like {MSH-5: EPIC})")
        out: dict[str, Any] = {}
        for key, value in node.value:
            kat = At((*at.path, getattr(key, "value", "?")), f"'{getattr(key, 'value', '?')}'",
                     at.where)  # fmt: skip
            path = FieldPath().check(key, ctx, kat)
            ctx.record(kat.path, value)
            if isinstance(value, ScalarNode):
                text = "" if is_null(value) else str(scalar_value(value))
                if isinstance(scalar_value(value), bool):
                    text = value.value
                item: Any = {"value": text, "raw": False}
            elif isinstance(value, MappingNode):
                item = _LONG.validate(value, ctx, kat, at.where)
            else:
                item = ctx.error(value, f"expected a value for {kat.key}, got {node_kind(value)}")
            if INVALID not in (path, item):
                out[path] = item
        return out

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {
                "oneOf": [
                    {"type": ["string", "number", "boolean", "null"]},
                    {
                        "type": "object",
                        "properties": {"value": {"type": "string"}, "raw": {"type": "boolean"}},
                        "required": ["value"],
                        "additionalProperties": False,
                    },
                ]
            },
        }


_LONG = Spec(
    "assignment",
    "A value with options.",
    (
        Field("value", String(), "The text to write.", required=True),
        Field("raw", Bool(), "Write delimiters as they are (a composite like DOE^JOHN) "
              "instead of escaping them.", default=False),
    ),
)  # fmt: skip


@step_kind(
    "set",
    Assignments(),
    example="set: {MSH-5: EPIC, MSH-6: MAIN}\nset: {PID-5: {value: DOE^JOHN, raw: true}}",
)
class Set(Step):
    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.items = [(parse_path(p), v["value"], v["raw"]) for p, v in config.items()]

    def run(self, message, ctx):
        for path, value, raw in self.items:
            try:
                message.set(path, value, raw=raw)
            except PathError as exc:
                raise StepError(str(exc)) from None


FROM_TO = Spec(
    "copy",
    "Copy the value at one path to another (as written: components and escapes kept). With "
    "[*] on the same segment in both paths, each occurrence is copied to its own.",
    (
        Field("from", FieldPath(), "Where the value is read.", required=True, example="PID-3.1"),
        Field("to", FieldPath(), "Where it is written.", required=True, example="PID-2"),
    ),
)


def _pairs(message, src, dst):
    """(source path, target path) pairs, pairing occurrences when both use [*]."""
    if src.occurrence == ALL and dst.occurrence == ALL and src.segment == dst.segment:
        for one in message.occurrences(src):
            yield one, dst.at(one.occurrence)
    else:
        yield src, dst


class _Copy(Step):
    remove_source = False

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.src = parse_path(config.from_)
        self.dst = parse_path(config.to)

    def run(self, message, ctx):
        for src, dst in _pairs(message, self.src, self.dst):
            value = message.get_raw(src, "")
            try:
                message.set(dst, value, raw=True)
                if self.remove_source:
                    message.delete(src)
            except PathError as exc:
                raise StepError(str(exc)) from None


@step_kind("copy", FROM_TO, example="copy: {from: PID-3.1, to: PID-2}")
class Copy(_Copy):
    pass


@step_kind(
    "move",
    Spec("move", "Copy, then clear the source.", FROM_TO.fields),
    example="move: {from: PV1-19, to: PV1-50}",
)
class Move(_Copy):
    remove_source = True


@step_kind(
    "delete",
    StrOrList(FieldPath(allow_segment=True), min_items=1),
    example="delete: ZPV\n"
    "delete: ['OBX[*]-16', 'NTE[*]', 'PID-3[2]']   # quote paths with [ ] in flow style",
)
class Delete(Step):
    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.paths = [parse_path(p) for p in config]

    def run(self, message, ctx):
        for path in self.paths:
            try:
                message.delete(path)
            except PathError as exc:
                raise StepError(str(exc)) from None
