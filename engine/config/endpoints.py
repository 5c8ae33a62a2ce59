"""A light syntax check of Twisted endpoint strings, and the address they bind or reach.

This does not build endpoints (that happens at start-up with `serverFromString` or, for TLS,
`SSL4ServerEndpoint`); it catches typos early and gives the cross checks a port to compare.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .validation import did_you_mean, suggest

_SERVER_OPTIONS = {
    "tcp": {"port", "interface", "backlog"},
    "tcp6": {"port", "interface", "backlog"},
    "unix": {"address", "mode", "lockfile", "backlog"},
}
_CLIENT_OPTIONS = {
    "tcp": {"host", "port", "timeout", "bindAddress"},
    "unix": {"path", "timeout", "checkPID"},
    "tls": {"host", "port", "timeout", "bindAddress", "trustRoots", "certificate", "privateKey"},
}
_SPLIT = re.compile(r"(?<!\\):")
WILDCARDS = frozenset({"", "0.0.0.0", "::"})


@dataclass(frozen=True)
class Endpoint:
    """What an endpoint string names. For servers `host` is the interface ("" = all)."""

    kind: str
    host: str | None = None
    port: int | None = None
    path: str | None = None
    options: dict[str, str] = field(default_factory=dict)

    def binds_same_as(self, other: Endpoint) -> bool:
        """True when two server endpoints cannot both listen."""
        if self.path is not None or other.path is not None:
            return self.path is not None and self.path == other.path
        if not self.port or self.port != other.port:
            return False
        return self.host in WILDCARDS or other.host in WILDCARDS or self.host == other.host

    def describe(self) -> str:
        """A short form for messages: `tcp:2575`, `tcp:2575:interface=127.0.0.1`, `unix:/x`."""
        if self.path is not None:
            return f"{self.kind}:{self.path}"
        if self.host and self.host not in WILDCARDS:
            return f"{self.kind}:{self.port}:interface={self.host}"
        return f"{self.kind}:{self.port}"


def parse_endpoint(text: str, server: bool = True) -> Endpoint:
    """Check a Twisted endpoint string. Raises ValueError with a readable reason."""
    kind, _, rest = text.partition(":")
    if kind == "ssl":
        if server:
            raise ValueError(
                "'ssl:' cannot require client certificates; "
                "use 'tcp:PORT' and a 'tls:' section instead"
            )
        raise ValueError("'ssl:' does not check the peer certificate; use 'tls:HOST:PORT' instead")
    kinds = _SERVER_OPTIONS if server else _CLIENT_OPTIONS
    if kind not in kinds:
        if kind.isdigit() and not rest:
            raise ValueError(f"no endpoint type; did you mean 'tcp:{kind}'?")
        expected = ", ".join(kinds)
        raise ValueError(
            f"unknown endpoint type '{kind}' (expected {expected}){did_you_mean(kind, kinds)}"
        )
    positional: list[str] = []
    options: dict[str, str] = {}
    for part in _SPLIT.split(rest) if rest else []:
        name, sep, value = part.partition("=")
        if sep:
            if name not in kinds[kind]:
                hint = suggest(name, kinds[kind], "options")
                raise ValueError(f"unknown option '{name}' for '{kind}:'{hint}")
            options[name] = value.replace("\\:", ":")
        else:
            positional.append(part.replace("\\:", ":"))
    if "backlog" in options:
        _number(options["backlog"], "backlog", 1, 1 << 20)
    if kind == "unix":
        return _unix(kind, positional, options, "address" if server else "path")
    if server:
        return _tcp_server(kind, positional, options)
    return _tcp_client(kind, positional, options)


def _number(text: str, what: str, low: int, high: int) -> int:
    if not text.isdigit() or not low <= int(text) <= high:
        raise ValueError(f"{what} must be a number from {low} to {high}, got '{text}'")
    return int(text)


def _unix(kind: str, positional: list[str], options: dict[str, str], key: str) -> Endpoint:
    paths = positional + ([options.pop(key)] if key in options else [])
    if len(paths) != 1 or not paths[0]:
        raise ValueError("expected exactly one socket path, like 'unix:/run/switchboard.sock'")
    return Endpoint(kind, path=paths[0], options=options)


def _tcp_server(kind: str, positional: list[str], options: dict[str, str]) -> Endpoint:
    ports = positional + ([options.pop("port")] if "port" in options else [])
    if len(ports) != 1:
        raise ValueError(f"expected exactly one port, like '{kind}:2575'")
    port = _number(ports[0], "port", 0, 65535)
    return Endpoint(kind, host=options.get("interface", ""), port=port, options=options)


def _tcp_client(kind: str, positional: list[str], options: dict[str, str]) -> Endpoint:
    values = positional + [options.pop(k) for k in ("host", "port") if k in options]
    if len(values) != 2 or not values[0]:
        raise ValueError(f"expected a host and a port, like '{kind}:host.example.org:6661'")
    port = _number(values[1], "port", 1, 65535)
    return Endpoint(kind, host=values[0], port=port, options=options)
