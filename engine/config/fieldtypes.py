"""The field types specs are built from: containers (lists, string-or-list, free mappings),
things outside the config (files, directories, endpoints, URLs, charsets), and the scalar types
of .scalars, re-exported. Step, destination and source modules import their types from here.
"""

from __future__ import annotations

import codecs
import encodings.aliases
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .endpoints import parse_endpoint
from .errors import display_path
from .scalars import Bool, Duration, Enum, Float, Int, Size, String, scalar_value  # noqa: F401  (re-exported)
from .validation import INVALID, At, Ctx, FieldType, did_you_mean, is_null, node_kind


class ListOf(FieldType):
    """A list whose items are checked by `item`."""

    def __init__(self, item: FieldType, min_items: int = 0):
        self.item = item
        self.min_items = min_items
        self.name = f"list of {item.name}"

    def check(self, node: Node, ctx: Ctx, at: At) -> Any:
        if not isinstance(node, SequenceNode):
            return self.wrong_type(node, ctx, at)
        return self._items(node, ctx, at)

    def _items(self, node: SequenceNode, ctx: Ctx, at: At) -> Any:
        if len(node.value) < self.min_items:
            if self.min_items == 1:
                return ctx.error(node, f"{at.key} must not be empty")
            return ctx.error(node, f"{at.key} needs at least {self.min_items} items")
        values = []
        for index, item in enumerate(node.value):
            ctx.record((*at.path, index), item)
            values.append(self.item.check(item, ctx, at.item(index)))
        return values

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "array", "items": self.item.json_schema()}
        if self.min_items:
            schema["minItems"] = self.min_items
        return schema

    def doc(self) -> str:
        return f"list of {self.item.doc()}"

    def nested_specs(self) -> list[Any]:
        return self.item.nested_specs()


class StrOrList(ListOf):
    """A string or a list of strings, always returned as a list."""

    def __init__(self, item: FieldType | None = None, min_items: int = 0):
        super().__init__(item or String(), min_items)
        self.name = f"{self.item.name} or list of {self.item.name}"

    def check(self, node: Node, ctx: Ctx, at: At) -> Any:
        if isinstance(node, SequenceNode):
            return self._items(node, ctx, at)
        if isinstance(node, ScalarNode) and not is_null(node):
            ctx.record((*at.path, 0), node)
            value = self.item.check(node, ctx, at)
            return INVALID if value is INVALID else [value]
        return self.wrong_type(node, ctx, at)

    def json_schema(self) -> dict[str, Any]:
        return {"anyOf": [self.item.json_schema(), super().json_schema()]}

    def doc(self) -> str:
        return f"{self.item.doc()} or list of {self.item.doc()}"


class FreeMapping(FieldType):
    """Any mapping of string keys to scalar values."""

    name = "mapping"

    def check(self, node: Node, ctx: Ctx, at: At) -> Any:
        if not isinstance(node, MappingNode):
            return self.wrong_type(node, ctx, at)
        result: dict[str, Any] = {}
        for key, value in node.value:
            if not isinstance(key, ScalarNode):
                ctx.error(key, f"keys must be plain strings in {at.key}")
                continue
            ctx.record((*at.path, key.value), value)
            if not isinstance(value, ScalarNode):
                ctx.error(
                    value,
                    f"expected a scalar for '{key.value}' in {at.key}, got {node_kind(value)}",
                )
                continue
            result[key.value] = scalar_value(value)
        return result

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
        }

    def doc(self) -> str:
        return "mapping of string to scalar"


class FilePath(FieldType):
    """An existing file; relative paths start at the config file's directory. Gives a Path."""

    name = "file path"

    def check(self, node: Node, ctx: Ctx, at: At) -> Any:
        text = _text(self, node, ctx, at)
        if text is INVALID:
            return INVALID
        path = resolve_path(text, ctx.base_dir)
        if path.is_dir():
            return ctx.error(
                node, f"expected a file for {at.key}, but {display_path(path)} is a directory"
            )
        if not path.is_file():
            return ctx.error(node, f"file not found for {at.key}: {display_path(path)}")
        return path

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string"}

    def doc(self) -> str:
        return "file path (relative to the config file)"


class DirPath(FieldType):
    """A directory (need not exist yet); relative to the config file's directory. Gives a Path."""

    name = "directory path"

    def check(self, node: Node, ctx: Ctx, at: At) -> Any:
        text = _text(self, node, ctx, at)
        if text is INVALID:
            return INVALID
        path = resolve_path(text, ctx.base_dir)
        if path.exists() and not path.is_dir():
            return ctx.error(
                node, f"expected a directory for {at.key}, but {display_path(path)} is a file"
            )
        return path

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string"}

    def doc(self) -> str:
        return "directory path (relative to the config file)"


def _text(field_type: FieldType, node: Node, ctx: Ctx, at: At) -> Any:
    if not isinstance(node, ScalarNode) or is_null(node):
        return field_type.wrong_type(node, ctx, at)
    return node.value


def resolve_path(text: str, base_dir: Path) -> Path:
    """`text` made absolute against `base_dir`, `~` expanded, `..` folded (symlinks kept)."""
    path = Path(text).expanduser()
    return Path(os.path.normpath(path if path.is_absolute() else base_dir / path))


class EndpointString(FieldType):
    """A Twisted endpoint string, checked lightly (see `endpoints.parse_endpoint`)."""

    def __init__(self, server: bool = True):
        self.server = server
        self.name = "endpoint string"

    def check(self, node: Node, ctx: Ctx, at: At) -> Any:
        if not isinstance(node, ScalarNode) or is_null(node):
            return self.wrong_type(node, ctx, at)
        if node_kind(node) == "int" and self.server:
            return self.wrong_type(node, ctx, at, f"; did you mean 'tcp:{node.value}'?")
        try:
            parse_endpoint(node.value, server=self.server)
        except ValueError as exc:
            return ctx.error(node, f"invalid endpoint '{node.value}' for {at.key}: {exc}")
        return node.value

    def json_schema(self) -> dict[str, Any]:
        kinds = "tcp|tcp6|unix" if self.server else "tcp|unix|tls"
        return {"type": "string", "pattern": f"^({kinds}):"}

    def doc(self) -> str:
        if self.server:
            return "Twisted server endpoint (tcp:PORT[:interface=ADDR][:backlog=N] or unix:PATH)"
        return "Twisted client endpoint (tcp:HOST:PORT, tls:HOST:PORT or unix:PATH)"


class Url(FieldType):
    """An absolute URL with one of `schemes` and a host."""

    def __init__(self, schemes: tuple[str, ...] = ("http", "https")):
        self.schemes = schemes
        self.name = "URL"

    def check(self, node: Node, ctx: Ctx, at: At) -> Any:
        if not isinstance(node, ScalarNode) or is_null(node):
            return self.wrong_type(node, ctx, at)
        parts = urlsplit(node.value)
        if parts.scheme not in self.schemes or not parts.netloc:
            expected = " or ".join(f"{scheme}://" for scheme in self.schemes)
            return ctx.error(
                node, f"invalid URL '{node.value}' for {at.key}: expected {expected}..."
            )
        return node.value

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "format": "uri"}

    def doc(self) -> str:
        return "URL (" + ", ".join(f"{scheme}://" for scheme in self.schemes) + ")"


_CODEC_NAMES = sorted(
    {name.replace("_", "-") for name in encodings.aliases.aliases.values()}
    | {"iso-8859-1", "utf-8", "ascii", "cp1252", "utf-16"}
)


class Charset(FieldType):
    """A character set Python knows (`codecs.lookup`), kept as written."""

    name = "charset"

    def check(self, node: Node, ctx: Ctx, at: At) -> Any:
        if not isinstance(node, ScalarNode) or is_null(node):
            return self.wrong_type(node, ctx, at)
        try:
            codecs.lookup(node.value)
        except LookupError:
            hint = did_you_mean(node.value, _CODEC_NAMES, cutoff=0.8)
            return ctx.error(node, f"unknown charset '{node.value}' for {at.key}{hint}")
        return node.value

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string"}

    def doc(self) -> str:
        return "charset name Python knows (iso-8859-1, utf-8, cp1252, ...)"
