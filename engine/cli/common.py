"""What every ``switchboard`` command shares: the --config option, loading the config, the
store, the running engine's admin API, and the formatting of times, rows and errors.

Command modules import this module (and the engine modules they drive), never each other;
``engine.cli`` registers them. Heavy engine imports stay inside functions, so ``switchboard
--help`` and ``check`` start fast.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime

import click

DEFAULT_CONFIG = "routes.yaml"
config_option = click.option(
    "-c",
    "--config",
    "config_path",
    default=DEFAULT_CONFIG,
    show_default=True,
    envvar="SWITCHBOARD_CONFIG",
    help="routes.yaml to use (env SWITCHBOARD_CONFIG).",
)


# config and store ---------------------------------------------------------------------
def load(config_path: str, build: bool = False):
    """Load and validate the config (and with ``build``, build its channels: functions,
    tables, stylesheets), or print every error and exit 1. Returns (config, pipeline)."""
    from engine.config import ConfigError, load_config
    from engine.pipeline import build_pipeline

    try:
        config = load_config(config_path)
        return config, (build_pipeline(config) if build else None)
    except ConfigError as exc:
        click.echo(exc.format("nothing was started."), err=True)
        sys.exit(1)


def setting(section, key: str, default=None):
    """A value of a validated config section (``config.admin``, ``config.store_options``...):
    the one place the CLI reads one, whether sections are mappings or objects."""
    if section is None:
        return default
    if isinstance(section, Mapping):
        return section.get(key, default)
    return getattr(section, key, default)


def store_engine(config):
    """A SQLAlchemy engine on the config's store."""
    from engine.store.db import create_store_engine

    return create_store_engine(config.store)


# formatting -----------------------------------------------------------------------------
def short(exc: Exception) -> str:
    """The first line of an error, clipped: what a user is shown instead of a traceback."""
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def parse_time(value: str | None) -> float | None:
    """An ISO time or an age (15m, 2h, 1d) as Unix seconds."""
    if value is None:
        return None
    from engine.config.spec import parse_duration

    try:
        return time.time() - parse_duration(value)
    except (ValueError, TypeError):
        pass
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: use an ISO time (2026-11-21T10:00) or an age (15m, 2h, 1d)"
        ) from None
    if dt.tzinfo is None:
        dt = dt.astimezone()
    return dt.timestamp()


def message_line(r: dict) -> str:
    """One stored message as a table row (`messages`, `tail`)."""
    kind = f"{r['message_type']}^{r['trigger']}" if r["trigger"] else r["message_type"]
    return (
        f"{r['id']:>8}  {iso(r['received_at'])[:23]:23}  {r['listener'][:12]:12} "
        f"{kind[:8]:8} {r['control_id'][:22]:22} {r['status']:9} {r['ack_code'] or '-'}"
    )


MESSAGE_HEADER = (
    f"{'ID':>8}  {'RECEIVED (UTC)':23}  {'LISTENER':12} {'TYPE':8} {'CONTROL ID':22} "
    f"{'STATUS':9} ACK"
)


# the running engine -------------------------------------------------------------------
class Admin:
    """The running engine's admin API, found from the config (listen address and token)."""

    def __init__(self, config_path: str):
        config, _ = load(config_path)
        if not config.admin:
            raise click.ClickException(
                "no admin listener in the config: add "
                "'admin: {listen: \"tcp:8480:interface=127.0.0.1\"}' and restart the engine"
            )
        from engine.config.endpoints import parse_endpoint

        ep = parse_endpoint(setting(config.admin, "listen"), server=True)
        host = ep.host if ep.host not in (None, "", "0.0.0.0", "::") else "127.0.0.1"
        self.base = f"http://{host}:{ep.port}"
        self.token = setting(config.admin, "token")

    def call(self, method: str, path: str, body: dict | None = None, ok=(200,)):
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        if data is None and method == "POST":
            data = b""
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except OSError as exc:
            raise click.ClickException(f"cannot reach the engine at {self.base}: {exc}") from None
        if status == 401:
            raise click.ClickException("the engine refused the admin token")
        try:
            payload = json.loads(raw or b"{}")
        except ValueError:
            payload = {"error": raw[:200].decode("latin-1")}
        if status not in ok:
            raise click.ClickException(payload.get("error") or f"HTTP {status}")
        return status, payload
