"""Scalar field types (strings, numbers, booleans, enums, durations, sizes) and the units
analysts write durations and sizes in: `250ms`, `30s`, `1h30m`, `64KiB`, `1GB`."""

from __future__ import annotations

import math
import re
from typing import Any

from yaml.constructor import SafeConstructor
from yaml.nodes import Node, ScalarNode

from .validation import At, Ctx, FieldType, did_you_mean, is_null, node_kind

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d)\s*)+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")

_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """Seconds in `text`: a bare number of seconds, or units ms/s/m/h/d, combinable (`1h30m`).

    Raises ValueError for anything else, negative numbers included.
    """
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        if not _DURATION.fullmatch(text):
            raise ValueError(f"not a duration: {text!r}") from None
        return sum(float(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(text))
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"not a duration: {text!r}")
    return seconds


def parse_size(text: str) -> int:
    """Bytes in `text`: a bare integer, or a number with B, KB, MB, GB, TB (powers of 1000)
    or KiB, MiB, GiB, TiB (powers of 1024), case-insensitive. Raises ValueError otherwise."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"not a size: {text!r}")
    number, unit = match.groups()
    if not unit:
        if "." in number:
            raise ValueError(f"not a size: {text!r}")
        return int(number)
    factor = _SIZE_UNITS.get(unit.lower())
    if factor is None:
        raise ValueError(f"unknown size unit {unit!r}")
    return round(float(number) * factor)


def format_duration(seconds: float) -> str:
    """The shortest exact spelling: 0.25 -> `250ms`, 90 -> `90s`, 86400 -> `1d`."""
    if seconds == 0:
        return "0s"
    for unit in ("d", "h", "m", "s"):
        count = seconds / _DURATION_UNITS[unit]
        if count >= 1 and count == int(count):
            return f"{int(count)}{unit}"
    millis = seconds * 1000
    if millis == int(millis):
        return f"{int(millis)}ms"
    return f"{seconds}s"


def format_size(size: int) -> str:
    """The largest binary unit that divides `size`: 16777216 -> `16MiB`, 1000 -> `1000B`."""
    for unit in ("tib", "gib", "mib", "kib"):
        factor = _SIZE_UNITS[unit]
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit[0].upper()}iB"
    return f"{size}B"


_constructor = SafeConstructor()


def scalar_value(node: ScalarNode) -> Any:
    """The Python value PyYAML would give for a scalar node."""
    return _constructor.construct_object(node)


class String(FieldType):
    """Any scalar, taken as the text written (so `2.5` stays "2.5" and `yes` stays "yes")."""

    name = "string"

    def __init__(
        self,
        pattern: str | None = None,
        pattern_hint: str = "",
        json_types: tuple[str, ...] = ("string",),
    ):
        self.pattern = re.compile(pattern) if pattern else None
        self.pattern_hint = pattern_hint
        self.json_types = json_types

    def check(self, node: Node, ctx: Ctx, at: At) -> Any:
        if not isinstance(node, ScalarNode) or is_null(node):
            return self.wrong_type(node, ctx, at)
        if self.pattern and not self.pattern.fullmatch(node.value):
            return ctx.error(
                node, f"invalid value '{node.value}' for {at.key}: {self.pattern_hint}"
            )
        return node.value

    def json_schema(self) -> dict[str, Any]:
        types = list(self.json_types)
        schema: dict[str, Any] = {"type": types[0] if len(types) == 1 else types}
        if self.pattern:
            schema["pattern"] = f"^(?:{self.pattern.pattern})$"
        return schema


class Int(FieldType):
    """An integer (YAML int, not bool), optionally within min..max."""

    name = "int"

    def __init__(self, min: int | None = None, max: int | None = None):
        self.min = min
        self.max = max

    def check(self, node: Node, ctx: Ctx, at: At) -> Any:
        if not isinstance(node, ScalarNode) or node_kind(node) != "int":
            return self.wrong_type(node, ctx, at)
        return _in_range(scalar_value(node), self.min, self.max, node, ctx, at)

    def json_schema(self) -> dict[str, Any]:
        return _range_schema({"type": "integer"}, self.min, self.max)

    def doc(self) -> str:
        return _range_doc("int", self.min, self.max)


class Float(FieldType):
    """A finite number (int or float), optionally within min..max."""

    name = "number"

    def __init__(self, min: float | None = None, max: float | None = None):
        self.min = min
        self.max = max

    def check(self, node: Node, ctx: Ctx, at: At) -> Any:
        if not isinstance(node, ScalarNode) or node_kind(node) not in ("int", "float"):
            return self.wrong_type(node, ctx, at)
        value = float(scalar_value(node))
        if not math.isfinite(value):
            return self.wrong_type(node, ctx, at)
        return _in_range(value, self.min, self.max, node, ctx, at)

    def json_schema(self) -> dict[str, Any]:
        return _range_schema({"type": "number"}, self.min, self.max)

    def doc(self) -> str:
        return _range_doc("number", self.min, self.max)


def _in_range(value: Any, low: Any, high: Any, node: Node, ctx: Ctx, at: At) -> Any:
    if (low is not None and value < low) or (high is not None and value > high):
        if low is not None and high is not None:
            bounds = f"between {low} and {high}"
        elif low is not None:
            bounds = f"at least {low}"
        else:
            bounds = f"at most {high}"
        return ctx.error(node, f"{at.key} must be {bounds}, got {node.value}")
    return value


def _range_schema(schema: dict[str, Any], low: Any, high: Any) -> dict[str, Any]:
    if low is not None:
        schema["minimum"] = low
    if high is not None:
        schema["maximum"] = high
    return schema


def _range_doc(name: str, low: Any, high: Any) -> str:
    if low is not None and high is not None:
        return f"{name} from {low} to {high}"
    if low is not None:
        return f"{name}, at least {low}"
    if high is not None:
        return f"{name}, at most {high}"
    return name


class Bool(FieldType):
    """A YAML bool: true/false (and YAML 1.1's yes/no/on/off)."""

    name = "bool"

    def check(self, node: Node, ctx: Ctx, at: At) -> Any:
        if not isinstance(node, ScalarNode) or node_kind(node) != "bool":
            return self.wrong_type(node, ctx, at)
        return scalar_value(node)

    def json_schema(self) -> dict[str, Any]:
        return {"type": "boolean"}

    def doc(self) -> str:
        return "bool (true or false)"


class Enum(FieldType):
    """One of fixed values, matched on the text written, case-insensitively: YAML 1.1 reads
    `off` as a bool, but here it is the word 'off'. `bools` maps true/false to values."""

    def __init__(self, *values: str, bools: dict[bool, str] | None = None):
        self.values = values
        self.bools = bools or {}
        self.name = "one of " + ", ".join(values)

    def check(self, node: Node, ctx: Ctx, at: At) -> Any:
        if not isinstance(node, ScalarNode) or is_null(node):
            return self.wrong_type(node, ctx, at)
        for value in self.values:
            if node.value.lower() == value.lower():
                return value
        if self.bools and node_kind(node) == "bool":
            return self.bools[scalar_value(node)]
        allowed = ", ".join(self.values)
        hint = did_you_mean(node.value, self.values)
        return ctx.error(
            node, f"invalid value '{node.value}' for {at.key} (allowed: {allowed}){hint}"
        )

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"enum": list(self.values)}
        if self.bools:
            return {"anyOf": [schema, {"type": "boolean"}]}
        return schema

    def doc(self) -> str:
        text = self.name
        if self.bools:
            text += f" (true = {self.bools[True]}, false = {self.bools[False]})"
        return text


class Duration(FieldType):
    """Seconds as a float, from `250ms`, `30s`, `5m`, `1h`, `1d`, `1h30m` or a bare number."""

    name = "duration"
    _HINT = "; write seconds or a number with ms, s, m, h or d, like 30s"
    PATTERN = r"^\s*(\d+(\.\d+)?\s*(ms|s|m|h|d)\s*)+$|^\s*\d+(\.\d+)?\s*$"

    def __init__(self, min: float = 0.0, max: float | None = None):
        self.min = min
        self.max = max

    def check(self, node: Node, ctx: Ctx, at: At) -> Any:
        if not isinstance(node, ScalarNode) or node_kind(node) not in ("string", "int", "float"):
            return self.wrong_type(node, ctx, at, self._HINT)
        try:
            seconds = parse_duration(node.value)
        except ValueError:
            return self.wrong_type(node, ctx, at, self._HINT)
        if seconds < self.min:
            return ctx.error(node, f"{at.key} must be at least {self.min}s, got {node.value}")
        if self.max is not None and seconds > self.max:
            return ctx.error(node, f"{at.key} must be at most {self.max}s, got {node.value}")
        return seconds

    def json_schema(self) -> dict[str, Any]:
        return {
            "anyOf": [
                _range_schema({"type": "number"}, self.min, self.max),
                {"type": "string", "pattern": self.PATTERN},
            ]
        }

    def doc(self) -> str:
        text = "duration (like 250ms, 30s, 5m, 1h, 1d; a bare number is seconds)"
        return text if self.max is None else f"{text}, at most {self.max:g}s"


class Size(FieldType):
    """Bytes as an int, from `64KiB`, `16MiB`, `1GB` or a bare integer."""

    name = "size"
    _HINT = "; write bytes or a number with B, KB, MB, GB, KiB, MiB or GiB, like 16MiB"
    PATTERN = r"^\s*\d+(\.\d+)?\s*([KkMmGgTt][Ii]?[Bb]|[Bb])\s*$|^\s*\d+\s*$"

    def __init__(self, min: int | None = None, max: int | None = None):
        self.min = min
        self.max = max

    def check(self, node: Node, ctx: Ctx, at: At) -> Any:
        if not isinstance(node, ScalarNode) or node_kind(node) not in ("string", "int"):
            return self.wrong_type(node, ctx, at, self._HINT)
        try:
            size = parse_size(node.value)
        except ValueError:
            return self.wrong_type(node, ctx, at, self._HINT)
        if self.min is not None and size < self.min:
            return ctx.error(
                node, f"{at.key} must be at least {format_size(self.min)}, got {node.value}"
            )
        if self.max is not None and size > self.max:
            return ctx.error(
                node, f"{at.key} must be at most {format_size(self.max)}, got {node.value}"
            )
        return size

    def json_schema(self) -> dict[str, Any]:
        return {
            "anyOf": [
                _range_schema({"type": "integer"}, self.min, self.max),
                {"type": "string", "pattern": self.PATTERN},
            ]
        }

    def doc(self) -> str:
        text = "size (like 64KiB, 16MiB, 1GB; a bare number is bytes)"
        if self.min is not None:
            text += f", at least {format_size(self.min)}"
        return text
