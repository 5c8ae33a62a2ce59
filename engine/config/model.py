"""`load_config`: routes.yaml and the channel files it points at, validated in one pass."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .channel_spec import CHANNEL, channel_name, channel_where
from .checks import check_listeners, check_retention, check_routes
from .errors import ConfigError, Problem, UnreadableConfig, display_path
from .loader import Location, load_yaml
from .registry import Check, Registry, using
from .routes_spec import ROUTES
from .validation import INVALID, At, Ctx, Path_


@dataclass(frozen=True, eq=False)
class Config:
    """A validated configuration, every default filled.

    Every value is its spec's frozen settings object (`switchboard docs` lists the keys; a
    key is an attribute); paths are absolute `Path`s and durations float seconds.
    `channel_files` says which file each channel came from.
    """

    path: Path
    base_dir: Path
    store: str
    store_options: Any
    channels_dir: Path
    listeners: list[Any]
    admin: Any | None
    logging: Any
    routes: list[Any]
    channels: dict[str, Any]
    channel_files: dict[str, Path] = field(default_factory=dict)
    locations: Mapping[Path_, Location] = field(default_factory=dict, repr=False)

    def location(self, path: Path_) -> Location | None:
        """Where the value at `path` (or, if it was defaulted, its nearest parent) was written."""
        path = tuple(path)
        while path:
            if path in self.locations:
                return self.locations[path]
            path = path[:-1]
        return None

    def where(self, path: Path_) -> str:
        """`routes.yaml:5:11` for `("listeners", 0, "mllp")`; channel values are under
        `("channels", NAME, ...)`. Falls back to the file name."""
        location = self.location(path)
        return str(location) if location else display_path(self.path)

    def problem(self, path: Path_, message: str) -> Problem:
        """A problem at the value at `path` (or its nearest parent; else the whole file)."""
        location = self.location(path)
        return location.problem(message) if location else Problem(str(self.path), 0, 0, message)

    def listener(self, name: str) -> Any:
        for listener in self.listeners:
            if listener.name == name:
                return listener
        raise KeyError(name)


def load_config(
    path: str | os.PathLike[str],
    environ: Mapping[str, str] | None = None,
    registry: Registry | None = None,
    checks: tuple[Check, ...] = (),
) -> Config:
    """Load and validate routes.yaml and every channel file with the kinds of `registry`
    (engine.components.load_config passes the engine's), then run the registry's checks and
    `checks` on whatever validated. Raises ConfigError listing every problem of every file,
    found in this one pass; when routes.yaml itself cannot be read, that is the only
    problem. `environ` replaces os.environ for `${VAR}` substitution."""
    with using(registry):
        return _load(path, environ, (*(registry.checks if registry else ()), *checks))


def _load(path, environ, checks) -> Config:
    file = Path(os.path.abspath(path))
    base_dir = file.parent
    problems: list[Problem] = []
    locations: dict[Path_, Location] = {}
    top: Any = None
    if file.is_dir() or not file.exists():
        missing = "is a directory, not a file" if file.is_dir() else "file not found"
        raise UnreadableConfig([Problem(str(file), 0, 0, missing)])
    root, found = load_yaml(file, environ)
    if root is None and found and found[0].line == 0:  # unreadable: nothing else to say
        raise UnreadableConfig(found)
    problems.extend(found)
    if root is not None:
        ctx = Ctx(str(file), base_dir, problems, locations)
        top = ROUTES.validate(root, ctx, At((), "the top level", None), None)
    channels_dir = getattr(top, "channels_dir", None) or base_dir / "channels"
    loader = _ChannelLoader(environ, problems, locations)
    loader.load_dir(channels_dir, explicit=("channels_dir",) in locations)
    listeners = getattr(top, "listeners", None) or []
    problems.extend(check_listeners(listeners, getattr(top, "admin", None), locations))
    listener_names = {
        name for item in listeners if isinstance(name := getattr(item, "name", None), str)
    }
    routes = getattr(top, "routes", None) or []
    problems.extend(check_routes(routes, listener_names, loader.names, locations))
    problems.extend(check_retention(getattr(top, "store_options", None), listeners, locations))
    config = Config(
        path=file,
        base_dir=base_dir,
        store=getattr(top, "store", INVALID),
        store_options=getattr(top, "store_options", INVALID),
        channels_dir=channels_dir,
        listeners=listeners,
        admin=getattr(top, "admin", INVALID),
        logging=getattr(top, "logging", INVALID),
        routes=getattr(top, "routes", INVALID),
        channels=loader.channels,
        channel_files=loader.files,
        locations=locations,
    )
    for check in checks:
        problems.extend(check(config))
    if problems:
        raise ConfigError(problems)
    return config


class _ChannelLoader:
    """Validates channel files; `names` also holds the names of channels that had problems,
    so routes to them are not reported as unknown as well."""

    def __init__(
        self,
        environ: Mapping[str, str] | None,
        problems: list[Problem],
        locations: dict[Path_, Location],
    ):
        self.environ = environ
        self.problems = problems
        self.locations = locations
        self.channels: dict[str, Any] = {}
        self.files: dict[str, Path] = {}
        self.names: set[str] = set()
        self.first: dict[str, Location | None] = {}

    def load_dir(self, directory: Path, explicit: bool) -> None:
        if not directory.is_dir():
            if explicit:
                where = self.locations[("channels_dir",)]
                message = f"channels directory not found: {display_path(directory)}"
                self.problems.append(where.problem(message))
            return
        for file in sorted(directory.glob("*.yaml")):
            if not file.name.endswith("_test.yaml") and not file.name.startswith("."):
                self.load_file(file)

    def load_file(self, file: Path) -> None:
        root, found = load_yaml(file, self.environ)
        self.problems.extend(found)
        if root is None:
            return
        peeked = channel_name(root)
        if peeked:
            self.names.add(peeked)
        key = peeked or str(file)
        ctx = Ctx(str(file), file.parent, self.problems, self.locations)
        at = At(("channels", key), "the top level", None)
        channel = CHANNEL.validate(root, ctx, at, channel_where(root))
        name = getattr(channel, "name", None)
        if not isinstance(name, str):
            return
        name_at = self.locations.get(("channels", name, "name"))
        if name in self.channels:
            message = f"duplicate channel name '{name}' (first at {self.first[name]})"
            where = name_at or Location(str(file), 0, 0)
            self.problems.append(where.problem(message))
            return
        self.first[name] = name_at
        self.channels[name] = channel
        self.files[name] = file
