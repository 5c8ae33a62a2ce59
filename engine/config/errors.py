"""Config problems with their source location, and the error that carries all of them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def display_path(file: str | os.PathLike[str]) -> str:
    """Show `file` relative to the current directory when it lies under it, else absolute."""
    path = Path(file)
    if not path.is_absolute():
        return str(path)
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@dataclass(frozen=True, order=True)
class Problem:
    """One config problem. `line` and `column` are 1-based; 0 means "the whole file"."""

    file: str
    line: int
    column: int
    message: str

    def format(self) -> str:
        where = display_path(self.file)
        if self.line > 0:
            where = f"{where}:{self.line}:{self.column}"
        return f"{where}: {self.message}"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


class ConfigError(Exception):
    """Every problem found in one pass over the config, sorted by file, line and column."""

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]):
        self.problems: list[Problem] = sorted(set(problems))
        super().__init__(self.format())

    def format(self, trailer: str | None = None) -> str:
        """One line per problem, then a count line, e.g. `2 errors in 2 files; <trailer>`."""
        lines = [problem.format() for problem in self.problems]
        files = {problem.file for problem in self.problems}
        count = f"{_plural(len(self.problems), 'error')} in {_plural(len(files), 'file')}"
        lines.append(f"{count}; {trailer}" if trailer else f"{count}.")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


class UnreadableConfig(ConfigError):
    """routes.yaml itself cannot be read (missing, a directory, no permission): one line says
    so, and there is nothing else to count."""

    def format(self, trailer: str | None = None) -> str:
        line = self.problems[0].format()
        return f"{line}; {trailer}" if trailer else line
