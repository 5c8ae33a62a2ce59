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
from .registry import Registry, default_registry
from .routes_spec import ROUTES
from .validation import INVALID, At, Ctx, Path_


@dataclass(frozen=True, eq=False)
class Config:
    """A validated configuration, every default filled.

    `listeners`, `routes` and `channels` hold plain dicts as described by their specs
    (`switchboard docs`); paths are absolute `Path`s and durations float seconds.
    """

    path: Path
    base_dir: Path
    store: str
    store_options: dict[str, Any]
    channels_dir: Path
    listeners: list[dict[str, Any]]
    admin: dict[str, Any] | None
    logging: dict[str, Any]
    routes: list[dict[str, Any]]
    channels: dict[str, dict[str, Any]]
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

    def listener(self, name: str) -> dict[str, Any]:
        for listener in self.listeners:
            if listener["name"] == name:
                return listener
        raise KeyError(name)


def load_config(
    path: str | os.PathLike[str],
    environ: Mapping[str, str] | None = None,
    registry: Registry | None = None,
) -> Config:
    """Load and validate routes.yaml and every channel file, and run the registry's checks
    (with the default registry: the channels are built, so functions import and tables load).
    Raises ConfigError listing every problem of every file, found in this one pass; when
    routes.yaml itself cannot be read, that is the only problem. `environ` replaces
    os.environ for `${VAR}` substitution."""
    if registry is None:
        import engine.components  # noqa: F401  (the built-in kinds and checks)
    file = Path(os.path.abspath(path))
    base_dir = file.parent
    problems: list[Problem] = []
    locations: dict[Path_, Location] = {}
    top: dict[str, Any] = {}
    if file.is_dir() or not file.exists():
        missing = "is a directory, not a file" if file.is_dir() else "file not found"
        raise UnreadableConfig([Problem(str(file), 0, 0, missing)])
    root, found = load_yaml(file, environ)
    if root is None and found and found[0].line == 0:  # unreadable: nothing else to say
        raise UnreadableConfig(found)
    problems.extend(found)
    if root is not None:
        ctx = Ctx(str(file), base_dir, problems, locations, registry)
        top = ROUTES.validate(root, ctx, At((), "the top level", None), None)
        if not isinstance(top, dict):
            top = {}
    channels_dir = top.get("channels_dir") or base_dir / "channels"
    loader = _ChannelLoader(environ, registry, problems, locations)
    loader.load_dir(channels_dir, explicit=("channels_dir",) in locations)
    listeners = top.get("listeners") or []
    problems.extend(check_listeners(listeners, top.get("admin"), locations))
    listener_names = {
        item["name"]
        for item in listeners
        if isinstance(item, dict) and isinstance(item["name"], str)
    }
    problems.extend(check_routes(top.get("routes") or [], listener_names, loader.names, locations))
    problems.extend(check_retention(top.get("store_options"), listeners, locations))
    config = Config(
        path=file,
        base_dir=base_dir,
        store=top.get("store", INVALID),
        store_options=top.get("store_options", INVALID),
        channels_dir=channels_dir,
        listeners=listeners,
        admin=top.get("admin", INVALID),
        logging=top.get("logging", INVALID),
        routes=top.get("routes", INVALID),
        channels=loader.channels,
        locations=locations,
    )
    for check in (registry or default_registry).checks:
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
        registry: Registry | None,
        problems: list[Problem],
        locations: dict[Path_, Location],
    ):
        self.environ = environ
        self.registry = registry
        self.problems = problems
        self.locations = locations
        self.channels: dict[str, dict[str, Any]] = {}
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
        ctx = Ctx(str(file), file.parent, self.problems, self.locations, self.registry)
        at = At(("channels", key), "the top level", None)
        channel = CHANNEL.validate(root, ctx, at, channel_where(root))
        name = channel.get("name") if isinstance(channel, dict) else None
        if not isinstance(name, str):
            return
        name_at = self.locations.get(("channels", name, "name"))
        if name in self.channels:
            message = f"duplicate channel name '{name}' (first at {self.first[name]})"
            where = name_at or Location(str(file), 0, 0)
            self.problems.append(where.problem(message))
            return
        self.first[name] = name_at
        self.channels[name] = {**channel, "path": file}
