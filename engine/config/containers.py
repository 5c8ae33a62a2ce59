"""Container field types: lists, string-or-list, free mappings."""

from __future__ import annotations

from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .scalars import String, scalar_value
from .validation import INVALID, At, Ctx, FieldType, is_null, node_kind


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
