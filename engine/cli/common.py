"""What every ``switchboard`` command shares: the --config option, loading the config, the
store, the running engine's admin API, and the formatting of times, rows and errors.

Command modules import this module (and the engine modules they drive), never each other;
``engine.cli`` registers them. Heavy engine imports stay inside functions, so ``switchboard
--help`` and ``check`` start fast.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import sys
import time
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
def load(config_path: str, ctx=None):
    """Load, validate and build the config (functions import, tables and stylesheets load:
    engine.components.load) with ``ctx`` (an engine.context.Context; a throwaway check by
    default), or print every error and exit 1. Returns (config, pipeline)."""
    from engine.components import load as load_and_build
    from engine.config import ConfigError
    from engine.context import Context

    try:
        return load_and_build(config_path, ctx or Context(fresh_modules={}))
    except ConfigError as exc:
        click.echo(exc.format("nothing was started."), err=True)
        sys.exit(1)


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
NO_ADMIN = (
    "no admin listener in the config: add 'admin: {listen: \"tcp:8480:interface=127.0.0.1\"}' "
    "and restart the engine"
)
PROBE_TIMEOUT = 5.0  # GET /healthz: does the engine run?
CALL_TIMEOUT = 30.0
CLIENT_CERT_ENV = ("SWITCHBOARD_ADMIN_CLIENT_CERT", "SWITCHBOARD_ADMIN_CLIENT_KEY")


class Admin:
    """The engine's admin API where the config puts it: ``admin.listen`` (TCP or a Unix
    socket), ``admin.token`` (sent as the bearer token) and ``admin.tls`` (HTTPS that trusts
    exactly the listener's certificate, ``admin.tls.cert``, and presents the client
    certificate in SWITCHBOARD_ADMIN_CLIENT_CERT / SWITCHBOARD_ADMIN_CLIENT_KEY when set)."""

    def __init__(self, config, config_path: str):
        from engine.config.endpoints import parse_endpoint

        admin = config.admin
        self.config_path = config_path
        self.token = admin.token
        self.tls = admin.tls
        ep = parse_endpoint(admin.listen, server=True)
        self.socket_path = ep.path
        self.host = ep.host if ep.host not in (None, "", "0.0.0.0", "::") else "127.0.0.1"
        self.port = ep.port
        scheme = "https" if self.tls else "http"
        if ep.path is not None:
            self.base = f"{scheme}+unix://{ep.path}"
        else:
            host = f"[{self.host}]" if ":" in self.host else self.host
            self.base = f"{scheme}://{host}:{self.port}"

    # the transport ----------------------------------------------------------------------
    def _tls_context(self):
        cert = self.tls.cert
        try:
            with open(cert, encoding="ascii", errors="replace") as f:
                pem = f.read()
        except OSError as exc:
            raise click.ClickException(
                f"cannot read the admin listener's certificate {cert} ({exc.strerror}): the "
                "command line trusts exactly that certificate (admin.tls.cert)"
            ) from None
        end = "-----END CERTIFICATE-----"
        leaf = pem[: pem.find(end) + len(end)] if end in pem else pem
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        # the trust store holds the listener's own leaf certificate and nothing else, so no
        # name needs checking (the address may be 127.0.0.1 while the name is the host's)
        ctx.check_hostname = False
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        try:
            ctx.load_verify_locations(cadata=leaf)
            client_cert, client_key = (os.environ.get(name) for name in CLIENT_CERT_ENV)
            if client_cert:
                ctx.load_cert_chain(client_cert, client_key or None)
        except (OSError, ssl.SSLError) as exc:
            raise click.ClickException(
                f"cannot set up TLS to the admin listener: {short(exc)} (admin.tls.cert, "
                f"{' / '.join(CLIENT_CERT_ENV)})"
            ) from None
        return ctx

    def _connection(self, timeout: float):
        context = self._tls_context() if self.tls else None
        if self.socket_path is not None:
            return _UnixConnection(self.socket_path, timeout, context)
        if context is not None:
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout,
                                               context=context)  # fmt: skip
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def _request(self, method: str, path: str, data: bytes | None, headers: dict,
                 timeout: float) -> tuple[int, bytes]:  # fmt: skip
        conn = self._connection(timeout)
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    # what commands use ------------------------------------------------------------------
    def running(self) -> bool:
        """Whether the engine runs: its admin listener answers GET /healthz (any status).
        Nothing listening there is False; anything else (a TLS failure, a timeout) is an
        error, never a guess, so no action goes to the store behind a running engine."""
        try:
            self._request("GET", "/healthz", None, {}, PROBE_TIMEOUT)
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except (OSError, http.client.HTTPException) as exc:
            hint = "admin.listen"
            if self.tls:
                hint += (", admin.tls.cert, and a client certificate in "
                         f"{' / '.join(CLIENT_CERT_ENV)} if the listener requires one")  # fmt: skip
            raise click.ClickException(
                f"cannot tell whether the engine runs: {self.base} did not answer /healthz "
                f"({short(exc)}). Nothing was changed: check {hint} in {self.config_path}, "
                "or stop the engine to change the store directly."
            ) from None
        return True

    def call(self, method: str, path: str, body: dict | None = None, ok=(200,)):
        """One API request; the status and the JSON answer. A refusal (401, 403), an
        engine error or any status not in ``ok`` is a ClickException saying what to do."""
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        if data is None and method == "POST":
            data = b""
        try:
            status, raw = self._request(method, path, data, headers, CALL_TIMEOUT)
        except (OSError, http.client.HTTPException) as exc:
            raise click.ClickException(
                f"cannot reach the engine at {self.base}: {short(exc)}"
            ) from None
        try:
            payload = json.loads(raw or b"{}")
        except ValueError:
            payload = {"error": raw[:200].decode("latin-1")}
        if status in (401, 403):
            given = "the admin token" if self.token else "a request without a token"
            raise click.ClickException(
                f"the engine at {self.base} refused {given} (HTTP {status}): set admin.token "
                f"in {self.config_path} to the running engine's token (e.g. token: "
                "${SWITCHBOARD_ADMIN_TOKEN}, with SWITCHBOARD_ADMIN_TOKEN set). Nothing was "
                "changed."
            )
        if status not in ok:
            error = payload.get("error") if isinstance(payload, dict) else None
            if status >= 500:
                raise click.ClickException(
                    f"the engine at {self.base} failed: {error or f'HTTP {status}'} (see its "
                    "log); try again"
                )
            raise click.ClickException(error or f"HTTP {status}")
        return status, payload


class _UnixConnection(http.client.HTTPConnection):
    """http.client over a Unix socket (``admin.listen: unix:/path``), TLS or not."""

    def __init__(self, path: str, timeout: float, context: ssl.SSLContext | None):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path
        self.context = context

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
            self.sock = self.context.wrap_socket(sock) if self.context is not None else sock
        except BaseException:
            sock.close()
            raise


def admin_api(config_path: str) -> Admin:
    """The running engine's admin API, for commands that need the engine (status, tail,
    reload); no admin listener in the config is an error that says what to add."""
    config, _ = load(config_path)
    if not config.admin:
        raise click.ClickException(NO_ADMIN)
    return Admin(config, config_path)


def engine_or_store(config_path: str):
    """(config, Admin) when the engine runs, so an action goes through its audited API and
    reaches its workers at once; (config, None) when it does not, or when the config has no
    admin listener: then the command changes the store itself (:func:`said_store_path`)."""
    config, _ = load(config_path)
    if not config.admin:
        return config, None
    admin = Admin(config, config_path)
    return config, (admin if admin.running() else None)


def act(config_path: str, through_engine, on_store, said) -> None:
    """An operator action: ``through_engine(admin)`` while the engine runs (its audited API;
    it wakes the workers concerned), else ``on_store(queue, operator)`` on the store
    (engine.admin.actions, audited alike). Prints ``said(result)``, then, when the store was
    changed directly, that it was."""
    config, api = engine_or_store(config_path)
    result = on_store(queue_store(config), operator()) if api is None else through_engine(api)
    click.echo(said(result))
    if api is None:
        said_store_path(config)


def said_store_path(config) -> None:
    """Tell the user (stderr) that the command changed the store itself, and why."""
    if config.admin:
        click.echo("(engine not running: changed the store directly)", err=True)
    else:
        click.echo(
            "(no admin listener in the config: changed the store directly; a running engine "
            "sees the change within store_options.poll_interval)",
            err=True,
        )


def operator():
    """Who acts, for the audit log, when the command line changes the store itself."""
    import getpass

    from engine.admin.actions import Operator

    try:
        user = getpass.getuser()
    except Exception:  # no user name in some containers
        user = str(os.getuid())
    return Operator(f"cli:{user}", "cli")


def queue_store(config):
    """The delivery queues of the config's store."""
    from engine.delivery.queue import QueueStore

    return QueueStore(store_engine(config), f"cli-{os.getpid()}")
