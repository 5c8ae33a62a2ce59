"""Declarative config specs: declared once, they validate YAML, print docs and emit JSON Schema.

A component declares a `Spec` (a name, a description and `Field`s, each with a `FieldType`);
`Spec.validate` turns a YAML mapping node into the spec's frozen settings object (one slotted
dataclass per spec, an attribute per field, every default filled: a default lives in the spec
only), recording each problem with its location; `describe(spec)` renders the docs text and
`json_schema(spec)` the JSON Schema (draft 2020-12) of the same spec.
"""

from __future__ import annotations

import dataclasses
import keyword
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

from .errors import ConfigError, display_path
from .scalars import parse_duration, parse_size
from .validation import INVALID, At, Ctx, FieldType, closest, is_null, suggest

__all__ = [
    "JSON_SCHEMA_DIALECT",
    "Field",
    "Nested",
    "Spec",
    "describe",
    "json_schema",
    "parse_duration",
    "parse_size",
]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


@dataclass(frozen=True)
class Field:
    """One key of a spec.

    `default` is written as an analyst would write it (`"10s"`, `"16MiB"`) and goes through the
    type like a value from a file. `requires` names a key this one only applies together with.
    `default_doc` documents a default computed by the spec's `finish` hook.
    """

    name: str
    type: FieldType
    description: str = ""
    required: bool = False
    default: Any = None
    nullable: bool = False
    example: Any = None
    requires: str | None = None
    default_doc: str | None = None

    @property
    def accepts_null(self) -> bool:
        """null is allowed when declared, and for optional keys without a default."""
        return self.nullable or (not self.required and self.default is None)


Finish = Callable[[dict[str, Any], MappingNode, Ctx, str], None]


@dataclass(frozen=True)
class Spec:
    """A mapping with known keys.

    `label_key` names the key that identifies list items in messages (`listener 'lab-in'`);
    `exactly_one_of` lists keys of which exactly one must be given; `shorthand` names the key
    a plain scalar stands for (`python: mod:fn` == `python: {function: mod:fn}`); `finish`
    runs after the fields on the values as a dict, for checks that span several of them.
    `kind` (a destination's, a source's) becomes the settings' `kind`; with `kinds` (keys of
    which exactly one is given) `kind` is the one given.
    """

    name: str
    description: str
    fields: tuple[Field, ...]
    label_key: str | None = None
    exactly_one_of: tuple[str, ...] = ()
    shorthand: str | None = None
    finish: Finish | None = None
    kind: str | None = None
    kinds: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kinds and not self.exactly_one_of:
            object.__setattr__(self, "exactly_one_of", self.kinds)

    @property
    def settings_type(self) -> type[Settings]:
        """The frozen dataclass `validate` returns, made once per spec."""
        made = self.__dict__.get("_settings_type")
        if made is None:
            made = _settings_type(self)
            object.__setattr__(self, "_settings_type", made)
        return made

    def settings(self, values: Mapping[str, Any]) -> Settings:
        """The settings object of already-validated values (by key name)."""
        return self.settings_type(**{attribute(k): v for k, v in values.items()})

    def build(self, values: Mapping[str, Any], base_dir: Any = ".") -> Settings:
        """Validate a plain mapping as if it had been written in a file (tests, code that
        makes settings): raises ConfigError with every problem."""
        from pathlib import Path

        node = yaml.compose(yaml.safe_dump(dict(values)), Loader=yaml.SafeLoader)
        ctx = Ctx("<settings>", Path(base_dir))
        value = self.validate(node, ctx, At((), "the top level", None), self.name)
        if ctx.problems:
            raise ConfigError(ctx.problems)
        return value

    def field(self, name: str) -> Field | None:
        for spec_field in self.fields:
            if spec_field.name == name:
                return spec_field
        return None

    @property
    def keys(self) -> list[str]:
        return [spec_field.name for spec_field in self.fields]

    def where_item(self, node: Node, index: int) -> str:
        """`listener 'lab-in'` when the item has a usable label key, else `listener 3`."""
        if self.label_key and isinstance(node, MappingNode):
            for key, value in node.value:
                if (
                    key.value == self.label_key
                    and isinstance(value, ScalarNode)
                    and value.value
                    and not is_null(value)
                ):
                    return f"{self.name} '{value.value}'"
        return f"{self.name} {index + 1}"

    def validate(self, node: Node, ctx: Ctx, at: At, where: str | None) -> Any:
        """Validate a mapping node. `where` describes it in messages (None: the file's top)."""
        label = where or _file_label(ctx)
        if self.shorthand and isinstance(node, ScalarNode) and not is_null(node):
            node = MappingNode(
                "tag:yaml.org,2002:map",
                [(ScalarNode("tag:yaml.org,2002:str", self.shorthand), node)],
                node.start_mark,
                node.end_mark,
            )
        if not isinstance(node, MappingNode):
            return Nested(self).wrong_type(node, ctx, at)
        result: dict[str, Any] = {}
        present: dict[str, Node] = {}
        suggested: set[str] = set()
        for key, value in node.value:
            if not isinstance(key, ScalarNode):
                ctx.error(key, f"keys must be plain strings in {label}")
                continue
            spec_field = self.field(key.value)
            if spec_field is None:
                hint = suggest(key.value, self.keys)
                ctx.error(key, f"unknown key '{key.value}' in {label}{hint}")
                suggested.add(closest(key.value, self.keys) or "")
                continue
            present[key.value] = key
            child = At((*at.path, key.value), f"'{key.value}'", where, key.value)
            ctx.record(child.path, value)
            if spec_field.accepts_null and is_null(value):
                result[key.value] = None
            else:
                result[key.value] = spec_field.type.check(value, ctx, child)
        self._check_presence(node, present, suggested, ctx, label)
        for spec_field in self.fields:
            if spec_field.name in result:
                continue
            if spec_field.required or (spec_field.requires and spec_field.requires not in present):
                result[spec_field.name] = INVALID if spec_field.required else None
            else:
                result[spec_field.name] = default_value(spec_field, ctx, at, where)
        if self.finish is not None:
            self.finish(result, node, ctx, label)
        return self.settings(result)

    def _check_presence(
        self,
        node: MappingNode,
        present: dict[str, Node],
        suggested: set[str],
        ctx: Ctx,
        label: str,
    ) -> None:
        """Required keys (unless a misspelling of one was reported), exactly-one-of, requires."""
        for spec_field in self.fields:
            missing = spec_field.name not in present and spec_field.name not in suggested
            if spec_field.required and missing:
                ctx.error(node, f"missing required key '{spec_field.name}' in {label}")
        given = [name for name in self.exactly_one_of if name in present]
        if self.exactly_one_of and not given:
            choices = " or ".join(f"'{name}'" for name in self.exactly_one_of)
            ctx.error(node, f"{label} needs one of {choices}")
        if len(given) > 1:
            ctx.error(
                present[given[1]],
                f"{label} has both '{given[0]}' and '{given[1]}'; keep only one",
            )
        for name, key in present.items():
            needed = self.field(name).requires  # type: ignore[union-attr]
            if needed and needed not in present:
                others = [other for other in given if other != needed]
                if others:
                    message = (
                        f"key '{name}' only applies with '{needed}'; {label} uses '{others[0]}'"
                    )
                else:
                    message = f"key '{name}' only applies with '{needed}'"
                ctx.error(key, message)


class Settings:
    """Base of every spec's settings type: frozen, slotted, compared by value."""

    __slots__ = ()

    def replace(self, **changes: Any) -> Settings:
        """A copy with some values changed (attribute names)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """Key names to plain values, nested settings as dicts too (JSON, tests)."""
        return {
            f.name.rstrip("_") if f.name[:-1] in _KEYWORD_KEYS else f.name: plain(
                getattr(self, f.name)
            )
            for f in dataclasses.fields(self)
        }


_KEYWORD_KEYS = frozenset(keyword.kwlist)  # soft keywords (match, type) are fine names


def attribute(key: str) -> str:
    """The attribute of a key: `from` -> `from_` (Python keywords), others as they are."""
    return f"{key}_" if key in _KEYWORD_KEYS else key


def plain(value: Any) -> Any:
    """Settings (and other dataclasses) as dicts, recursively through lists and dicts."""
    if isinstance(value, Settings):
        return value.as_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value


def _settings_type(spec: Spec) -> type[Settings]:
    label = spec.name if spec.kind in (None, spec.name) else f"{spec.kind} {spec.name}"
    words = re.findall(r"[A-Za-z0-9]+", label) or ["x"]
    name = "".join(word.capitalize() for word in words) + "Settings"
    namespace: dict[str, Any] = {"__doc__": f"Validated settings of {spec.name!r}."}
    if spec.kinds:
        kinds = tuple(attribute(k) for k in spec.kinds)
        namespace["kind"] = property(
            lambda self: next((k for k in kinds if getattr(self, k) is not None), None),
            doc="The one of " + ", ".join(spec.kinds) + " that is given.",
        )
    elif spec.kind is not None:
        namespace["kind"] = spec.kind
    fields = [(attribute(f.name), Any) for f in spec.fields]
    return dataclasses.make_dataclass(
        name, fields, bases=(Settings,), namespace=namespace, frozen=True, slots=True
    )


def default_value(spec_field: Field, ctx: Ctx, at: At, where: str | None) -> Any:
    """The field's default, converted by its type as if it had been written in the file."""
    if spec_field.default is None:
        return None
    node = yaml.compose(yaml.safe_dump(spec_field.default), Loader=yaml.SafeLoader)
    child = At((*at.path, spec_field.name), f"'{spec_field.name}'", where, spec_field.name)
    return spec_field.type.check(node, ctx, child)


def _file_label(ctx: Ctx) -> str:
    return display_path(ctx.file)


class Nested(FieldType):
    """A mapping validated by a nested spec."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.name = "mapping"

    def check(self, node: Node, ctx: Ctx, at: At) -> Any:
        if at.index is not None:
            where = self.spec.where_item(node, at.index)
        elif at.where is None:
            where = at.name
        else:
            where = f"{at.name} of {at.where}"
        return self.spec.validate(node, ctx, at, where)

    def doc(self) -> str:
        return f"mapping ({self.spec.name})"

    def json_schema(self) -> dict[str, Any]:
        return json_schema(self.spec)

    def nested_specs(self) -> list[Any]:
        return [self.spec]


def field_schema(spec_field: Field) -> dict[str, Any]:
    schema = spec_field.type.json_schema()
    schema = {"anyOf": [schema, {"type": "null"}]} if spec_field.nullable else dict(schema)
    if spec_field.description:
        schema["description"] = spec_field.description
    if spec_field.default is not None:
        schema["default"] = spec_field.default
    if spec_field.example is not None:
        schema["examples"] = [spec_field.example]
    return schema


def json_schema(spec: Spec) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one spec, nested specs inlined."""
    schema: dict[str, Any] = {
        "type": "object",
        "title": spec.name,
        "description": spec.description,
        "properties": {f.name: field_schema(f) for f in spec.fields},
        "additionalProperties": False,
    }
    required = [f.name for f in spec.fields if f.required]
    if required:
        schema["required"] = required
    if spec.exactly_one_of:
        schema["oneOf"] = [{"required": [name]} for name in spec.exactly_one_of]
    dependent = {f.name: [f.requires] for f in spec.fields if f.requires}
    if dependent:
        schema["dependentRequired"] = dependent
    if spec.shorthand:
        shorthand = spec.field(spec.shorthand)
        assert shorthand is not None, spec.shorthand
        return {"anyOf": [shorthand.type.json_schema(), schema], "description": spec.description}
    return schema


def format_value(value: Any) -> str:
    """A default or example as an analyst would write it in YAML (unquoted)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(format_value(item) for item in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{key}: {format_value(item)}" for key, item in value.items())
        return "{" + items + "}"
    return str(value)


def describe(spec: Spec, title: str | None = None) -> str:
    """Docs text of a spec and of the specs nested in it, each once. `title` replaces the
    heading of the first one."""
    seen: list[Spec] = []
    sections: list[str] = []
    queue = [spec]
    while queue:
        current = queue.pop(0)
        if current in seen:
            continue
        seen.append(current)
        sections.append(_describe_one(current, title if current is spec else None))
        for spec_field in current.fields:
            queue.extend(spec_field.type.nested_specs())
    return "\n\n".join(sections)


def _describe_one(spec: Spec, title: str | None) -> str:
    heading = title or spec.name
    lines = [heading, "=" * len(heading), spec.description]
    if spec.exactly_one_of:
        lines.append("Exactly one of: " + ", ".join(spec.exactly_one_of) + ".")
    if spec.shorthand:
        lines.append(f"A plain value stands for {{{spec.shorthand}: value}}.")
    lines.append("")
    for spec_field in spec.fields:
        facts = [spec_field.type.doc()]
        if spec_field.required:
            facts.append("required")
        elif spec_field.default_doc:
            facts.append(f"default: {spec_field.default_doc}")
        elif spec_field.default is not None:
            facts.append(f"default: {format_value(spec_field.default)}")
        elif spec_field.nullable:
            facts.append("default: null")
        else:
            facts.append("optional")
        if spec_field.requires:
            facts.append(f"only with {spec_field.requires}")
        lines.append(f"  {spec_field.name} ({'; '.join(facts)})")
        if spec_field.description:
            lines.append(f"      {spec_field.description}")
        if spec_field.example is not None:
            lines.append(f"      example: {format_value(spec_field.example)}")
    return "\n".join(lines).rstrip()
