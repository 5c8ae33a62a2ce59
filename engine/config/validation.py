"""The shared machinery of validation: where a value is, where problems go, the type base."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import Problem
from .loader import Location

Path_ = tuple[str | int, ...]


class _Invalid:
    """Stands in for a value that failed validation (its problem is already recorded)."""

    _instance: _Invalid | None = None

    def __new__(cls) -> _Invalid:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<invalid>"

    def __bool__(self) -> bool:
        return False


INVALID: Any = _Invalid()


@dataclass
class Ctx:
    """Validation state of one file: where problems and value locations are collected."""

    file: str
    base_dir: Path
    problems: list[Problem] = field(default_factory=list)
    locations: dict[Path_, Location] = field(default_factory=dict)

    def error(self, node: Node, message: str) -> Any:
        """Record a problem at `node` and return INVALID. A value whose `${VAR}` could not be
        substituted was reported already: nothing more is said about it."""
        if not getattr(node, "substitution_failed", False):
            self.problems.append(Location.of(self.file, node).problem(message))
        return INVALID

    def record(self, path: Path_, node: Node) -> None:
        self.locations[path] = Location.of(self.file, node)

    def record_tree(self, path: Path_, node: Node) -> None:
        """Record `node` and everything under it (for values no spec describes)."""
        self.record(path, node)
        if isinstance(node, MappingNode):
            for key, value in node.value:
                if isinstance(key, ScalarNode):
                    self.record_tree((*path, key.value), value)
        elif isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                self.record_tree((*path, index), item)


@dataclass(frozen=True)
class At:
    """Where a value sits: its path in the result, its label in messages (`'ack'`,
    `item 2 of 'versions'`), and the description of the enclosing mapping (None at the
    top level of a file)."""

    path: Path_
    key: str
    where: str | None
    name: str = ""
    index: int | None = None

    def item(self, index: int) -> At:
        return At(
            (*self.path, index), f"item {index + 1} of {self.key}", self.where, self.name, index
        )


_TAG_NAMES = {
    "str": "string",
    "int": "int",
    "float": "float",
    "bool": "bool",
    "null": "null",
    "timestamp": "date",
    "binary": "binary",
}


def node_kind(node: Node) -> str:
    """The YAML type of a node as shown in messages: string, int, bool, null, list, mapping."""
    if isinstance(node, MappingNode):
        return "mapping"
    if isinstance(node, SequenceNode):
        return "list"
    return _TAG_NAMES.get(node.tag.rsplit(":", 1)[-1], "value")


def describe_node(node: Node) -> str:
    """`string 'abc'`, `int '12'`, `null`, `list`, `mapping`."""
    kind = node_kind(node)
    if not isinstance(node, ScalarNode) or kind == "null":
        return kind
    text = node.value if len(node.value) <= 60 else node.value[:57] + "..."
    return f"{kind} '{text}'"


def is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag.endswith(":null")


def closest(word: str, choices: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The choice most like `word` (case-insensitive, difflib), or None."""
    lowered = {choice.lower(): choice for choice in choices}
    matches = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=cutoff)
    return lowered[matches[0]] if matches else None


def did_you_mean(word: str, choices: Iterable[str], cutoff: float = 0.6) -> str:
    """`; did you mean 'x'?` for the closest choice, or an empty string."""
    match = closest(word, choices, cutoff)
    return f"; did you mean '{match}'?" if match else ""


def suggest(word: str, choices: Iterable[str], listing: str = "valid keys") -> str:
    """`; did you mean 'x'?` when a choice is close, else `; valid keys: a, b, c`: a name
    that is not known always comes with what would have been right (empty without choices)."""
    choices = list(choices)
    hint = did_you_mean(word, choices)
    if hint or not choices:
        return hint
    return f"; {listing}: {quoted_list(choices)}"


def has_invalid(value: Any) -> bool:
    """Whether a validated value, or anything inside it, failed validation."""
    if value is INVALID:
        return True
    if isinstance(value, dict):
        return any(has_invalid(item) for item in value.values())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return any(has_invalid(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, list | tuple):
        return any(has_invalid(item) for item in value)
    return False


def quoted_list(values: Iterable[str]) -> str:
    return ", ".join(str(value) for value in values)


class FieldType:
    """Base of all field types: `check` a node into a value, describe itself for docs and
    JSON Schema. `name` appears in `expected <name> for '<key>'`."""

    name = "value"

    def check(self, node: Node, ctx: Ctx, at: At) -> Any:
        raise NotImplementedError

    def json_schema(self) -> dict[str, Any]:
        return {}

    def doc(self) -> str:
        """Short type text for the docs, e.g. `duration` or `list of string`."""
        return self.name

    def nested_specs(self) -> list[Any]:
        """Specs reachable from this type (documented after the spec that uses them)."""
        return []

    def wrong_type(self, node: Node, ctx: Ctx, at: At, hint: str = "") -> Any:
        return ctx.error(
            node, f"expected {self.name} for {at.key}, got {describe_node(node)}{hint}"
        )
