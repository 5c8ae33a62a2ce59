"""Checks across values once every file is validated: names that must be unique, listeners
that would bind the same port or read the same directory, routes that name unknown
channels or listeners."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from .endpoints import Endpoint, parse_endpoint
from .errors import Problem, display_path
from .loader import Location
from .spec import Settings
from .validation import Path_, suggest

Locations = Mapping[Path_, Location]


def _problem(locations: Locations, path: Path_, message: str) -> Problem | None:
    location = locations.get(path)
    return location.problem(message) if location else None


def _label(listener: Any, index: int) -> str:
    name = listener.name
    return f"'{name}'" if isinstance(name, str) else str(index + 1)


def _server_endpoint(text: Any) -> Endpoint | None:
    if not isinstance(text, str):
        return None
    try:
        return parse_endpoint(text, server=True)
    except ValueError:
        return None


def check_listeners(listeners: list[Any], admin: Any, locations: Locations) -> list[Problem]:
    """Duplicate names, shared ports or socket paths (admin included), shared directories."""
    found: list[Problem | None] = []
    names: dict[str, Location | None] = {}
    bound: list[tuple[str, Endpoint]] = []
    read: dict[Any, str] = {}
    for index, listener in enumerate(listeners):
        if not isinstance(listener, Settings):
            continue
        label = _label(listener, index)
        name = listener.name
        if isinstance(name, str):
            if name in names:
                found.append(
                    _problem(
                        locations,
                        ("listeners", index, "name"),
                        f"duplicate listener name '{name}' (first at {names[name]})",
                    )
                )
            names.setdefault(name, locations.get(("listeners", index, "name")))
        endpoint = _server_endpoint(getattr(listener, "mllp", None))  # a source kind's key
        if endpoint is not None:
            for other_label, other in bound:
                if endpoint.binds_same_as(other):
                    found.append(
                        _problem(
                            locations,
                            ("listeners", index, "mllp"),
                            f"listeners {other_label} and {label} both bind {endpoint.describe()}",
                        )
                    )
                    break
            bound.append((label, endpoint))
        directory = getattr(listener, "directory", None)
        if directory:
            if directory in read:
                found.append(
                    _problem(
                        locations,
                        ("listeners", index, "directory"),
                        f"listeners {read[directory]} and {label} both read "
                        f"{display_path(directory)}",
                    )
                )
            read.setdefault(directory, label)
    if isinstance(admin, Settings):
        found.extend(_check_admin(admin, bound, locations))
    return [problem for problem in found if problem is not None]


def _check_admin(
    admin: Any, bound: list[tuple[str, Endpoint]], locations: Locations
) -> list[Problem | None]:
    endpoint = _server_endpoint(admin.listen)
    if endpoint is None:
        return []
    for index, (label, other) in enumerate(bound):
        if endpoint.binds_same_as(other):
            message = f"listener {label} and the admin API both bind {endpoint.describe()}"
            if ("admin", "listen") in locations:
                return [_problem(locations, ("admin", "listen"), message)]
            return [_problem(locations, ("listeners", index, "mllp"), message)]
    return []


def check_routes(
    routes: list[Any],
    listener_names: Collection[str],
    channel_names: Collection[str],
    locations: Locations,
) -> list[Problem]:
    """Every channel in `to` is loaded; every `match.listener` is defined."""
    found: list[Problem | None] = []
    for index, route in enumerate(routes):
        if not isinstance(route, Settings):
            continue
        for position, name in enumerate(route.to or []):
            if isinstance(name, str) and name not in channel_names:
                hint = suggest(name, sorted(channel_names), "channels")
                path = ("routes", index, "to", position)
                found.append(_problem(locations, path, f"unknown channel '{name}'{hint}"))
        match = route.match
        listeners = match.listener if isinstance(match, Settings) else None
        for position, name in enumerate(listeners or []):
            if isinstance(name, str) and name not in listener_names:
                hint = suggest(name, sorted(listener_names), "listeners")
                path = ("routes", index, "match", "listener", position)
                found.append(_problem(locations, path, f"unknown listener '{name}'{hint}"))
    return [problem for problem in found if problem is not None]


def check_retention(
    store_options: Any, listeners: list[Any], locations: Locations
) -> list[Problem]:
    """Retention must keep a message longer than any duplicate window: the first copy in the
    store is what recognises a resend."""
    if not isinstance(store_options, Settings) or not isinstance(
        retention := store_options.retention, Settings
    ):
        return []
    windows = [
        (item.name, item.duplicate_window or 0.0)
        for item in listeners
        if isinstance(item, Settings) and isinstance(item.duplicate_window, int | float)
    ]
    if not windows:
        return []
    name, window = max(windows, key=lambda w: w[1])
    ages = [(("store_options", "retention", "max_age"), retention.max_age)]
    for i, rule in enumerate(retention.rules or []):
        if isinstance(rule, Settings):
            ages.append((("store_options", "retention", "rules", i, "max_age"), rule.max_age))
    found = []
    for path, age in ages:
        if isinstance(age, int | float) and age <= window:
            found.append(_problem(
                locations, path,
                f"retention max_age {age:g} s is not longer than listener '{name}' "
                f"duplicate_window {window:g} s: resends could no longer be recognised",
            ))  # fmt: skip
    return [p for p in found if p is not None]
