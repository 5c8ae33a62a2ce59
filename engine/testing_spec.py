"""The spec of a channel test file (`channels/<name>_test.yaml`): declared once, it validates
the files `switchboard test` runs and gives `switchboard schema` its channel-test schema.

`expect` takes the keys of EXPECT and, besides them, one key per destination of the channel
under test, each an OUTPUT. Which destinations exist is known once the channel is loaded, so
`test_file_spec(channel, destinations)` makes the spec for one file; an `expect` key that is
neither gets "did you mean", or the list of what it could be.
"""

from __future__ import annotations

from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from engine.config import Field, Spec, json_schema
from engine.config.channel_spec import plain_value
from engine.config.fieldtypes import ListOf, StrOrList
from engine.config.scalars import Bool, Enum, String
from engine.config.spec import JSON_SCHEMA_DIALECT, Nested
from engine.config.validation import At, Ctx, FieldType, did_you_mean, node_kind, quoted_list
from engine.hl7.fieldtypes import FieldPath
from engine.hl7.path import PathError, parse_path

ACKS = ("AA", "AE", "AR", "CA", "CE", "CR", "none")
_SCALAR_JSON = ["string", "number", "boolean", "null"]


class _JsonSubset(FieldType):
    """A mapping or list, kept as plain data: what a JSON body must contain."""

    name = "mapping or list"

    def check(self, node: Node, ctx: Ctx, at: At) -> Any:
        if not isinstance(node, MappingNode | SequenceNode):
            return self.wrong_type(node, ctx, at, " (use 'text' to look for text)")
        ctx.record_tree(at.path, node)
        return plain_value(node)

    def json_schema(self) -> dict[str, Any]:
        return {"type": ["object", "array"]}


class _Fields(FieldType):
    """`{PATH: expected}`: paths checked, expected values taken as text ('' or null: empty)."""

    name = "mapping of field path to expected value"

    def check(self, node: Node, ctx: Ctx, at: At) -> Any:
        if not isinstance(node, MappingNode):
            return self.wrong_type(node, ctx, at)
        out = {}
        for key, value in node.value:
            ctx.record((*at.path, key.value), key)
            try:
                parse_path(key.value)
            except PathError as exc:
                ctx.error(key, str(exc))
                continue
            if not isinstance(value, ScalarNode):
                ctx.error(value, f"expected a value for '{key.value}', got {node_kind(value)}")
                continue
            out[key.value] = "" if value.tag.endswith(":null") else value.value
        return out

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "propertyNames": FieldPath().json_schema(),
            "additionalProperties": {"type": _SCALAR_JSON},
        }


OUTPUT = Spec(
    "expected output",
    "What one destination of the channel should receive.",
    (
        Field("fields", _Fields(), "Field values of the message this destination gets "
              "(quote paths with brackets in flow style: {\"OBX[1]-3.1\": 2345-7}).",
              example={"MSH-5": "EPIC"}),
        Field("contains", _JsonSubset(), "A JSON subset the rendered body must contain "
              "(objects: these keys; lists: these items, in order).",
              example={"resourceType": "Bundle"}),
        Field("text", String(), "Text the rendered body must contain.", example="2951-2"),
    ),
)  # fmt: skip

EXPECT = Spec(
    "expect",
    "What should happen; besides these keys, one key per destination of the channel.",
    (
        Field("ack", Enum(*ACKS), "The ACK code answered (as an after_routing listener would, "
              "or the test's listener), or none."),
        Field("filtered", Bool(), "The channel filtered the message out."),
        Field("errored", String(json_types=("string", "boolean")), "A step failed and its "
              "reason contains this text; true: any reason; false: no step may fail."),
        Field("flags", StrOrList(), "The flags the flag steps set, in order.",
              example=["critical-glucose"]),
        Field("no_output", StrOrList(), "Destinations that must receive nothing.",
              example=["critical-results"]),
        Field("routed", Bool(), "With a listener: the real routes send the message to this "
              "channel."),
    ),
)  # fmt: skip


class _Expect(FieldType):
    """EXPECT's keys, and one OUTPUT per destination of the channel (`destinations` None: not
    known, every other key is taken as one)."""

    name = "expectations"

    def __init__(self, channel: str | None = None, destinations: list[str] | None = None):
        self.channel = channel
        self.destinations = destinations

    def check(self, node: Node, ctx: Ctx, at: At) -> Any:
        if not isinstance(node, MappingNode):
            return self.wrong_type(node, ctx, at)
        known = [(k, v) for k, v in node.value if k.value in EXPECT.keys]
        given = EXPECT.validate(MappingNode(node.tag, known), ctx, at, at.where)
        out = {k: v for k, v in (given.as_dict() if given else {}).items() if v is not None}
        outputs = {}
        for key, value in node.value:
            if key.value in EXPECT.keys:
                continue
            if self.destinations is not None and key.value not in self.destinations:
                ctx.error(key, f"unknown key '{key.value}' in expect of {at.where}"
                          + self._hint(key.value, EXPECT.keys))  # fmt: skip
                continue
            ctx.record((*at.path, key.value), key)
            child = At((*at.path, key.value), f"'{key.value}'", at.where, key.value)
            where = f"'{key.value}' in expect of {at.where}"
            outputs[key.value] = OUTPUT.validate(value, ctx, child, where)
        for index, name in enumerate(out.get("no_output") or []):
            if self.destinations is not None and name not in self.destinations:
                where = ctx.locations[(*at.path, "no_output", index)]
                ctx.problems.append(where.problem(
                    f"'{name}' in no_output is not a destination of channel '{self.channel}'"
                    + self._hint(name)))  # fmt: skip
        out["outputs"] = outputs
        return out

    def _hint(self, word: str, keys: tuple[str, ...] | list[str] = ()) -> str:
        """A close match among `keys` and the destinations, else what the choices are."""
        destinations = self.destinations or []
        hint = did_you_mean(word, [*keys, *destinations])
        listed = quoted_list(destinations) or "none"
        if hint:
            return hint
        if keys:
            return (f"; valid keys: {quoted_list(keys)}, and the destinations of channel "
                    f"'{self.channel}': {listed}")  # fmt: skip
        return f" (it has: {listed})"

    def json_schema(self) -> dict[str, Any]:
        schema = json_schema(EXPECT)
        schema["additionalProperties"] = {
            **json_schema(OUTPUT),
            "title": "expected output (a destination of the channel)",
        }
        return schema

    def nested_specs(self) -> list[Any]:
        return [EXPECT, OUTPUT]


INPUT = Spec(
    "input",
    "The message: a file (relative to the test file) or inline text (LF or CR separators).",
    (
        Field("file", String(), "Path of an HL7 file, relative to the test file.",
              example="../examples/oru_r01.hl7"),
        Field("text", String(), "The message itself; a YAML block (text: |) keeps its lines.",
              example="MSH|^~\\&|LAB|QUEST|..."),
    ),
    exactly_one_of=("file", "text"),
)  # fmt: skip


def test_file_spec(channel: str | None = None, destinations: list[str] | None = None) -> Spec:
    """The spec of a test file whose channel has `destinations` (None: not known)."""
    test = Spec(
        "test",
        "One channel test: a message in, what should happen.",
        (
            Field("name", String(), "What the test shows.", required=True),
            Field("input", Nested(INPUT), "The message.", required=True),
            Field("listener", String(), "Use this listener's settings and the real routes "
                  "(default: an after_routing listener routing everything to the channel)."),
            Field("expect", _Expect(channel, destinations), "What should happen: these keys, "
                  "and one key per destination of the channel with what it should receive.",
                  required=True),
        ),
        label_key="name",
    )  # fmt: skip
    return Spec(
        "channel test file",
        "Tests of one channel, run by `switchboard test`.",
        (
            Field("channel", String(), "The channel (default: the file name without "
                  "_test.yaml)."),
            Field("config", String(), "routes.yaml to load, relative to the test file "
                  "(default: the nearest one above it)."),
            Field("tests", ListOf(Nested(test), min_items=1), "The tests.", required=True),
        ),
    )  # fmt: skip


TEST_FILE = test_file_spec()


def channel_test_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of channel test files, for editors."""
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        **json_schema(TEST_FILE),
        "title": "Switchboard channel test file",
    }
