"""The spec of a channel file: name, description, steps and destinations.

Steps and destinations are validated with the specs their kinds registered (see `registry`);
kinds nobody registered yet are accepted as written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .fieldtypes import Enum, String
from .registry import current
from .routes_spec import name_type
from .spec import Field, Spec, json_schema
from .validation import (
    At,
    Ctx,
    FieldType,
    describe_node,
    did_you_mean,
    is_null,
    node_kind,
    suggest,
)


def plain_value(node: Node) -> Any:
    """What PyYAML's safe loader would give for the node (no validation)."""
    return SafeConstructor().construct_object(node, deep=True)


def _specs(role: str) -> dict[str, Any]:
    """The registered kinds of a role (none: values are taken as written)."""
    registry = current()
    return registry.specs(role) if registry is not None else {}


@dataclass(frozen=True, slots=True)
class StepConfig:
    """One validated step: its kind and what its spec made of its value."""

    kind: str
    config: Any


class StepList(FieldType):
    """Steps: a list of one-key mappings, the key being the step kind.

    Each step becomes a :class:`StepConfig`; messages name it `step 2 (translate)`.
    """

    name = "list of steps"

    def check(self, node: Node, ctx: Ctx, at: At) -> Any:
        if not isinstance(node, SequenceNode):
            return self.wrong_type(node, ctx, at)
        return [self._step(item, index, ctx, at) for index, item in enumerate(node.value)]

    def _step(self, node: Node, index: int, ctx: Ctx, at: At) -> Any:
        path = (*at.path, index)
        ctx.record(path, node)
        if not isinstance(node, MappingNode) or len(node.value) != 1:
            got = (
                f"{len(node.value)} keys" if isinstance(node, MappingNode) else describe_node(node)
            )
            return ctx.error(
                node,
                f"step {index + 1} must be a mapping with one key, its kind "
                f"(like '- filter: ...'), got {got}",
            )
        [(key, value)] = node.value
        if not isinstance(key, ScalarNode):
            return ctx.error(key, f"step {index + 1} kind must be a plain string")
        kind = key.value
        ctx.record((*path, "kind"), key)
        ctx.record((*path, "config"), value)
        steps = _specs("step")
        if not steps:
            ctx.record_tree((*path, "config"), value)
            return StepConfig(kind, plain_value(value))
        spec = steps.get(kind)
        if spec is None:
            hint = suggest(kind, sorted(steps), "step kinds")
            return ctx.error(key, f"unknown step kind '{kind}' in step {index + 1}{hint}")
        where = f"step {index + 1} ({kind})"
        child = At((*path, "config"), f"'{kind}'", where, kind)
        if isinstance(spec, Spec):
            config = spec.validate(value, ctx, child, where)
        else:
            config = spec.check(value, ctx, child)
        return StepConfig(kind, config)

    def json_schema(self) -> dict[str, Any]:
        steps = _specs("step")
        if not steps:
            item: dict[str, Any] = {"type": "object", "minProperties": 1, "maxProperties": 1}
        else:
            item = {"oneOf": [_one_key_object(kind, spec) for kind, spec in sorted(steps.items())]}
        return {"type": "array", "items": item}

    def doc(self) -> str:
        return "list of steps (each '- KIND: options', see the step kinds)"


def _one_key_object(kind: str, spec: Spec | FieldType) -> dict[str, Any]:
    schema = json_schema(spec) if isinstance(spec, Spec) else spec.json_schema()
    return {
        "type": "object",
        "properties": {kind: schema},
        "required": [kind],
        "additionalProperties": False,
    }


_NAME = Field("name", name_type(), "Unique name of the destination in its channel.",
              required=True, example="epic")  # fmt: skip


def destination_spec(kind: str, spec: Spec) -> Spec:
    """A registered destination spec with the common `name` field added; its settings'
    `kind` is the kind. Made once per spec."""
    made = _WITH_NAME.get(id(spec))
    if made is None or made[0] is not spec:
        fields = spec.fields if spec.field("name") is not None else (_NAME, *spec.fields)
        made = _WITH_NAME[id(spec)] = (spec, Spec(
            spec.name, spec.description, fields, label_key="name",
            exactly_one_of=spec.exactly_one_of, shorthand=spec.shorthand, finish=spec.finish,
            kind=kind,
        ))  # fmt: skip
    return made[1]


_WITH_NAME: dict[int, tuple[Spec, Spec]] = {}


class DestinationList(FieldType):
    """Destinations: mappings with a unique `name` and one kind key (`mllp:`, `fhir:`...).

    Each becomes its kind's settings (`kind`, `name` and its options); a plain dict with
    `kind` None while no kind is registered.
    """

    name = "list of destinations"

    def check(self, node: Node, ctx: Ctx, at: At) -> Any:
        if not isinstance(node, SequenceNode):
            return self.wrong_type(node, ctx, at)
        result = []
        names: dict[str, Node] = {}
        for index, item in enumerate(node.value):
            ctx.record((*at.path, index), item)
            value = self._destination(item, index, ctx, at)
            name_node = _key_value(item, "name")
            name = value.get("name") if isinstance(value, dict) else getattr(value, "name", None)
            if isinstance(name, str) and name_node is not None:
                if name in names:
                    ctx.error(name_node, f"duplicate destination name '{name}' in {at.where}")
                names.setdefault(name, name_node)
            result.append(value)
        return result

    def _destination(self, node: Node, index: int, ctx: Ctx, at: At) -> Any:
        item_at = at.item(index)
        where = _NAME_ONLY.where_item(node, index)
        if not isinstance(node, MappingNode):
            return ctx.error(node, f"expected mapping for {where}, got {node_kind(node)}")
        kinds = _specs("destination")
        if not kinds:
            value = _NAME_ONLY.validate(_only(node, "name"), ctx, item_at, where)
            rest = MappingNode(node.tag, [p for p in node.value if not _is_key(p[0], "name")])
            ctx.record_tree(item_at.path, node)
            return {**value.as_dict(), "kind": None, **plain_value(rest)}
        given = [key for key, _ in node.value if isinstance(key, ScalarNode) and key.value in kinds]
        if len(given) != 1:
            if given:
                names = " and ".join(f"'{key.value}'" for key in given[:2])
                return ctx.error(given[1], f"{where} has both {names}; keep only one")
            others = [
                key.value
                for key, _ in node.value
                if isinstance(key, ScalarNode) and not _is_key(key, "name")
            ]
            hint = did_you_mean(others[0], kinds) if others else ""
            choices = ", ".join(sorted(kinds))
            return ctx.error(node, f"{where} needs one of: {choices}{hint}")
        kind = given[0].value
        return destination_spec(kind, kinds[kind]).validate(node, ctx, item_at, where)

    def json_schema(self) -> dict[str, Any]:
        kinds = _specs("destination")
        if not kinds:
            item = json_schema(_NAME_ONLY)
            item["additionalProperties"] = True
        else:
            specs = [destination_spec(kind, spec) for kind, spec in sorted(kinds.items())]
            item = {"oneOf": [json_schema(spec) for spec in specs]}
        return {"type": "array", "items": item}

    def doc(self) -> str:
        return "list of destinations (each with a name and one kind key, see the kinds)"


_NAME_ONLY = Spec("destination", "A destination of a channel.", (_NAME,), label_key="name")


def _key_value(node: Node, name: str) -> Node | None:
    if isinstance(node, MappingNode):
        for key, value in node.value:
            if _is_key(key, name):
                return value
    return None


def _is_key(node: Node, name: str) -> bool:
    return isinstance(node, ScalarNode) and node.value == name


def _only(node: MappingNode, name: str) -> MappingNode:
    pairs = [(key, value) for key, value in node.value if _is_key(key, name)]
    return MappingNode(node.tag, pairs, node.start_mark, node.end_mark)


CHANNEL = Spec(
    "channel",
    "One file in channels/: what a message goes through and where it goes.",
    (
        Field("name", name_type(), "Unique name of the channel, used in routes.",
              required=True, example="lab-results"),
        Field("description", String(), "What the channel is for."),
        Field("steps", StepList(), "Steps run in order on each message.", default=[]),
        Field("destinations", DestinationList(), "Where the results go.", default=[]),
        Field("storage", Enum("everything", "raw_and_final", "metadata_only"), "What is kept "
              "of this channel's messages (default: store_options.storage).", nullable=True),
    ),
    label_key="name",
)  # fmt: skip


def peek_text(node: Node, key: str) -> str | None:
    """The text of a file's top-level `key`, read before validation, or None (validation
    reports a value that is not usable)."""
    value = _key_value(node, key)
    if isinstance(value, ScalarNode) and value.value and not is_null(value):
        return value.value
    return None


def channel_name(node: Node) -> str | None:
    """The name a channel file gives, read before validation, or None."""
    return peek_text(node, "name")


def channel_where(node: Node) -> str | None:
    """`channel 'lab-results'` when the file names its channel, else None (the file name)."""
    name = channel_name(node)
    return f"channel '{name}'" if name else None
