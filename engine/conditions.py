"""Compile validated conditions (see engine.hl7.fieldtypes) into predicates on a Message."""

from __future__ import annotations

import re
from collections.abc import Callable

from engine.hl7.message import Message
from engine.hl7.path import parse_path

Predicate = Callable[[Message], bool]


def compile_condition(cond: dict) -> Predicate:
    if "all" in cond:
        parts = [compile_condition(c) for c in cond["all"]]
        return lambda m: all(p(m) for p in parts)
    if "any" in cond:
        parts = [compile_condition(c) for c in cond["any"]]
        return lambda m: any(p(m) for p in parts)
    if "not" in cond:
        inner = compile_condition(cond["not"])
        return lambda m: not inner(m)
    path = parse_path(cond["field"])
    if "exists" in cond:
        want = cond["exists"]
        return lambda m: m.exists(path) == want
    if "equals" in cond:
        value = str(cond["equals"])
        return lambda m: any(v == value for v in m.iter_values(path))
    if "not_equals" in cond:
        value = str(cond["not_equals"])
        return lambda m: not any(v == value for v in m.iter_values(path))
    if "in" in cond:
        values = frozenset(str(v) for v in cond["in"])
        return lambda m: any(v in values for v in m.iter_values(path))
    if "not_in" in cond:
        values = frozenset(str(v) for v in cond["not_in"])
        return lambda m: not any(v in values for v in m.iter_values(path))
    if "regex" in cond:
        rx = re.compile(cond["regex"])
        return lambda m: any(rx.search(v) for v in m.iter_values(path))
    raise ValueError(f"not a condition: {cond!r}")
