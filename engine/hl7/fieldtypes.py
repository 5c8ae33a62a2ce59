"""Config field types for HL7 field paths, regular expressions and conditions on messages.

A condition is written as one test (`{field: MSH-4, in: [QUEST, LABCORP]}`) or a combination
(`{all: [...]}`, `{any: [...]}`, `{not: {...}}`). Tests: `equals`, `not_equals`, `in`,
`not_in`, `regex` (a match anywhere; anchor with ^ and $), `exists` (true: valued, false: empty
or missing). With `[*]` in the path the test holds when any value passes it.
"""

from __future__ import annotations

import re
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from engine.config.scalars import scalar_value
from engine.config.validation import INVALID, At, Ctx, FieldType, is_null, node_kind, suggest
from engine.hl7.path import PathError, parse_path

TESTS = ("equals", "not_equals", "in", "not_in", "regex", "exists")
COMBINATORS = ("all", "any", "not")


class FieldPath(FieldType):
    """An HL7 field path such as PID-3.1, OBX[*]-5 or PID-3[2].1."""

    name = "field path"

    def __init__(self, allow_segment: bool = False):
        self.allow_segment = allow_segment

    def check(self, node: Node, ctx: Ctx, at: At) -> Any:
        if not isinstance(node, ScalarNode) or is_null(node):
            return self.wrong_type(node, ctx, at)
        try:
            path = parse_path(node.value)
        except PathError as exc:
            return ctx.error(node, f"{at.key}: {exc}")
        if path.is_segment and not self.allow_segment:
            return ctx.error(node, f"{at.key}: '{node.value}' names a segment; add -<field>")
        return node.value

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": r"^[A-Z][A-Z0-9]{2}(\[(\*|[1-9][0-9]*)\])?(-.+)?$"}


class Regex(FieldType):
    name = "regular expression"

    def check(self, node: Node, ctx: Ctx, at: At) -> Any:
        if not isinstance(node, ScalarNode) or is_null(node):
            return self.wrong_type(node, ctx, at)
        try:
            re.compile(node.value)
        except re.error as exc:
            return ctx.error(node, f"invalid regular expression for {at.key}: {exc}")
        return node.value

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "format": "regex"}


class Condition(FieldType):
    """A test on a message field, or all/any/not of conditions."""

    name = "condition"

    def check(self, node: Node, ctx: Ctx, at: At) -> Any:
        if not isinstance(node, MappingNode):
            return self.wrong_type(node, ctx, at, " (like {field: MSH-4, equals: QUEST})")
        keys = {k.value: (k, v) for k, v in node.value if isinstance(k, ScalarNode)}
        for key, (knode, _) in keys.items():
            ctx.record((*at.path, key), knode)
        combos = [k for k in keys if k in COMBINATORS]
        if combos:
            if len(keys) != 1:
                return ctx.error(
                    node, f"{at.key}: '{combos[0]}' stands alone; nest other tests inside it"
                )
            key = combos[0]
            _, value = keys[key]
            child = At((*at.path, key), f"'{key}'", at.where, at.name)
            if key == "not":
                inner = self.check(value, ctx, child)
                return INVALID if inner is INVALID else {"not": inner}
            if not isinstance(value, SequenceNode) or not value.value:
                return ctx.error(value, f"'{key}' takes a non-empty list of conditions")
            items = [self.check(v, ctx, child.item(i)) for i, v in enumerate(value.value)]
            return INVALID if INVALID in items else {key: items}
        unknown = [k for k in keys if k not in (*TESTS, "field")]
        for key in unknown:
            hint = suggest(key, ("field", *TESTS, *COMBINATORS))
            ctx.error(keys[key][0], f"unknown key '{key}' in {at.key}{hint}")
        if unknown:
            return INVALID
        if "field" not in keys:
            return ctx.error(node, f"{at.key} needs 'field' and a test, or all/any/not")
        tests = [k for k in keys if k in TESTS]
        if len(tests) != 1:
            return ctx.error(
                node,
                f"{at.key} needs exactly one test of: {', '.join(TESTS)}"
                + (f" (got {', '.join(tests)})" if tests else ""),
            )
        field = FieldPath().check(keys["field"][1], ctx, At((*at.path, "field"), "'field'",
                                                            at.where))  # fmt: skip
        test = tests[0]
        vnode = keys[test][1]
        if test in ("in", "not_in"):
            if not isinstance(vnode, SequenceNode) or not all(
                isinstance(v, ScalarNode) for v in vnode.value
            ):
                return ctx.error(vnode, f"'{test}' takes a list of values, got {node_kind(vnode)}")
            value: Any = [v.value for v in vnode.value]
        elif test == "exists":
            value = scalar_value(vnode) if isinstance(vnode, ScalarNode) else None
            if not isinstance(value, bool):
                return ctx.error(vnode, "'exists' takes true or false")
        elif test == "regex":
            value = Regex().check(vnode, ctx, At((*at.path, test), "'regex'", at.where))
        else:
            if not isinstance(vnode, ScalarNode):
                return ctx.error(vnode, f"'{test}' takes one value, got {node_kind(vnode)}")
            value = "" if is_null(vnode) else vnode.value
        if INVALID in (field, value):
            return INVALID
        return {"field": field, test: value}

    def json_schema(self) -> dict[str, Any]:
        return _condition_schema(4)

    def doc(self) -> str:
        return "condition ({field: PATH, TEST: value} or all/any/not of conditions)"


def _condition_schema(depth: int) -> dict[str, Any]:
    """Conditions nest; the schema is written out to a fixed depth (editors need no $ref)."""
    if depth == 0:
        return {"type": "object"}
    value = {"type": ["string", "number"]}
    test = {
        "type": "object",
        "properties": {
            "field": {"type": "string"},
            "equals": value,
            "not_equals": value,
            "in": {"type": "array", "items": value},
            "not_in": {"type": "array", "items": value},
            "regex": {"type": "string"},
            "exists": {"type": "boolean"},
        },
        "required": ["field"],
        "additionalProperties": False,
    }
    inner = _condition_schema(depth - 1)

    def combo(key: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {key: schema},
            "required": [key],
            "additionalProperties": False,
        }

    items = {"type": "array", "items": inner, "minItems": 1}
    return {"oneOf": [test, combo("all", items), combo("any", items), combo("not", inner)]}
