"""Read YAML into nodes that keep their source marks.

`yaml.compose()` gives every node a start mark (0-based line and column), which is where
file:line:column in config errors comes from. On top of PyYAML this module:

- reports duplicate mapping keys (PyYAML keeps the last one silently);
- resolves `<<` merge keys, so later stages see plain mappings;
- replaces `${VAR}` and `${VAR:-default}` in string values from the environment
  (`$${` stands for a literal `${`), re-resolving the type of unquoted values, so
  `port: ${PORT}` gives an int; a value whose substitution failed is flagged
  (`substitution_failed`) so that validation does not report it a second time;
- turns YAML syntax errors and unreadable files into `Problem`s instead of raising.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from .errors import Problem, display_path

MERGE_TAG = "tag:yaml.org,2002:merge"
MAP_TAG = "tag:yaml.org,2002:map"


@dataclass(frozen=True)
class Location:
    """A place in a config file; `line` and `column` are 1-based."""

    file: str
    line: int
    column: int

    @classmethod
    def of(cls, file: str | os.PathLike[str], node_or_mark: Node | yaml.Mark) -> Location:
        mark = node_or_mark.start_mark if isinstance(node_or_mark, Node) else node_or_mark
        return cls(str(file), mark.line + 1, mark.column + 1)

    def problem(self, message: str) -> Problem:
        return Problem(self.file, self.line, self.column, message)

    def __str__(self) -> str:
        return f"{display_path(self.file)}:{self.line}:{self.column}"


def load_yaml(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> tuple[Node | None, list[Problem]]:
    """Compose one YAML file. Returns (root node or None when unreadable, problems).

    An empty file gives an empty mapping node.
    """
    file = str(Path(path).absolute())
    environ = os.environ if environ is None else environ
    try:
        text = Path(file).read_bytes().decode("utf-8")
    except OSError as exc:
        return None, [Problem(file, 0, 0, f"cannot read file: {exc.strerror or exc}")]
    except UnicodeDecodeError as exc:
        line = exc.object.count(b"\n", 0, exc.start) + 1
        column = exc.start - (exc.object.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, [Problem(file, line, column, "file is not UTF-8 text")]
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        return None, [_syntax_problem(file, exc)]
    except yaml.YAMLError as exc:  # pragma: no cover - PyYAML marks all parse errors
        return None, [Problem(file, 0, 0, f"YAML syntax error: {exc}")]
    if root is None:
        start = yaml.Mark(file, 0, 0, 0, None, None)
        return MappingNode(MAP_TAG, [], start, start), []
    problems: list[Problem] = []
    _Walker(file, environ, problems).check(root)
    _resolve_merges(file, root, problems)
    return root, problems


def _syntax_problem(file: str, exc: yaml.MarkedYAMLError) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    message = f"YAML syntax error: {exc.problem or exc.context}"
    if exc.context and exc.problem and exc.context_mark is not None:
        message += f" ({exc.context} at line {exc.context_mark.line + 1})"
    if mark is None:  # pragma: no cover - PyYAML always gives one of the two marks
        return Problem(file, 0, 0, message)
    return Location.of(file, mark).problem(message)


_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_resolver = Resolver()


def substitute(value: str, environ: Mapping[str, str]) -> tuple[str, list[str]]:
    """Replace `${VAR}` / `${VAR:-default}` in `value`. Returns (text, error messages).

    `${VAR:-default}` uses the default when VAR is unset or empty; `$${` is a literal `${`.
    """
    errors: list[str] = []

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "$${":
            return "${"
        if match.group(1) is None:
            errors.append("unclosed '${' in value; write '$${' for a literal '${'")
            return token
        name, has_default, default = match.group(1).partition(":-")
        if not _VAR_NAME.fullmatch(name):
            errors.append(f"invalid environment variable reference '{token}'")
            return token
        current = environ.get(name)
        if has_default:
            return current if current else default
        if current is None:
            errors.append(f"environment variable '{name}' is not set")
            return token
        return current

    return _REFERENCE.sub(replace, value), errors


class _Walker:
    """One pass over the node graph: duplicate keys and environment substitution."""

    def __init__(self, file: str, environ: Mapping[str, str], problems: list[Problem]):
        self.file = file
        self.environ = environ
        self.problems = problems
        self.seen: set[int] = set()

    def check(self, node: Node) -> None:
        if id(node) in self.seen:
            return
        self.seen.add(id(node))
        if isinstance(node, MappingNode):
            self._check_keys(node)
            for key, value in node.value:
                if isinstance(key, MappingNode | SequenceNode):
                    self.check(key)
                self.check(value)
        elif isinstance(node, SequenceNode):
            for item in node.value:
                self.check(item)
        elif isinstance(node, ScalarNode) and "${" in node.value:
            self._substitute(node)

    def _check_keys(self, node: MappingNode) -> None:
        seen: set[tuple[str, str]] = set()
        for key, _value in node.value:
            if not isinstance(key, ScalarNode) or key.tag == MERGE_TAG:
                continue
            ident = (key.tag, key.value)
            if ident in seen:
                self.problems.append(
                    Location.of(self.file, key).problem(f"duplicate key '{key.value}'")
                )
            seen.add(ident)

    def _substitute(self, node: ScalarNode) -> None:
        original = node.value
        node.value, errors = substitute(original, self.environ)
        for message in errors:
            self.problems.append(Location.of(self.file, node).problem(message))
        if errors:
            node.substitution_failed = True  # type: ignore[attr-defined]
        implicit = _resolver.resolve(ScalarNode, original, (True, False))
        if node.style is None and node.tag == implicit:
            node.tag = _resolver.resolve(ScalarNode, node.value, (True, False))


def _resolve_merges(file: str, root: Node, problems: list[Problem]) -> None:
    """Flatten `<<` merge keys in place; explicit keys win over merged ones."""
    constructor = SafeConstructor()
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, MappingNode):
            if any(key.tag == MERGE_TAG for key, _ in node.value):
                try:
                    constructor.flatten_mapping(node)
                except ConstructorError as exc:
                    problems.append(_syntax_problem(file, exc))
                    node.value = [(k, v) for k, v in node.value if k.tag != MERGE_TAG]
                node.value = _last_wins(node.value)
            stack.extend(value for _, value in node.value)
        elif isinstance(node, SequenceNode):
            stack.extend(node.value)


def _last_wins(pairs: list[tuple[Node, Node]]) -> list[tuple[Node, Node]]:
    kept: list[tuple[Node, Node]] = []
    seen: set[tuple[str, str]] = set()
    for key, value in reversed(pairs):
        ident = (key.tag, key.value) if isinstance(key, ScalarNode) else ("", str(id(key)))
        if ident not in seen:
            seen.add(ident)
            kept.append((key, value))
    kept.reverse()
    return kept
