"""The ``switchboard`` command line."""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from engine import __version__

DEFAULT_CONFIG = "routes.yaml"
GC_YOUNG_THRESHOLD = 10_000  # see run()
config_option = click.option(
    "-c",
    "--config",
    "config_path",
    default=DEFAULT_CONFIG,
    show_default=True,
    envvar="SWITCHBOARD_CONFIG",
    help="routes.yaml to use (env SWITCHBOARD_CONFIG).",
)


def _load(config_path: str, build: bool = False):
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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="switchboard")
def cli() -> None:
    """Switchboard, an HL7 v2 interface engine."""


# run / check ---------------------------------------------------------------------------
@cli.command()
@config_option
def run(config_path: str) -> None:
    """Start the engine on CONFIG; SIGTERM or SIGINT stops it cleanly."""
    started = time.perf_counter()
    config, _ = _load(config_path)
    from twisted.internet import reactor

    from engine.app import Switchboard
    from engine.lifecycle import ListenError, install_signal_handlers
    from engine.logging import configure_logging, get_logger

    configure_logging(config.logging["level"], config.logging["format"])
    log = get_logger("switchboard")
    from engine.config import ConfigError

    try:
        engine = Switchboard(config, reactor)  # builds the channels: functions, tables...
    except ConfigError as exc:
        click.echo(exc.format("nothing was started."), err=True)
        sys.exit(1)
    stopping = []

    def stop(name: str) -> None:
        if stopping:
            log.info("already stopping", signal=name)
            return
        stopping.append(name)
        log.info("stopping", signal=name)
        reactor.stop()

    # before the start: a signal while the store migrates is acted on once the reactor runs
    install_signal_handlers(reactor, stop, engine.reload)
    try:
        engine.startService()  # listeners bind first: a busy port touches nothing else
    except ListenError as exc:
        click.echo(f"switchboard: {exc}. {exc.hint} Nothing was started.", err=True)
        sys.exit(1)
    except Exception as exc:  # store unreachable, bad certificate...
        click.echo(f"switchboard: could not start: {exc}", err=True)
        sys.exit(1)
    reactor.addSystemEventTrigger("before", "shutdown", engine.stopService)
    reactor.callWhenRunning(install_signal_handlers, reactor, stop, engine.reload)
    # Everything loaded so far lives as long as the process: keep it out of the collector's
    # full passes, which otherwise walk ~100k start-up objects (35-50 ms pauses, bench/).
    gc.collect()
    gc.freeze()
    # The young generation filled every ~30 messages (700 objects, the default) and its
    # passes freed next to nothing: a message's objects die by reference count, not in
    # cycles (gc callbacks, 60,000 messages at 8x8: 10 objects collected). 10,000 leaves
    # room for everything in flight, so the collector runs only when something builds up
    # (about 3 µs of CPU per message less at 32x4, bench/).
    gc.set_threshold(GC_YOUNG_THRESHOLD)
    log.info(
        "started",
        version=__version__,
        listeners=len(config.listeners),
        seconds=round(time.perf_counter() - started, 3),
    )
    reactor.run()
    log.info("stopped")


@cli.command()
@config_option
def check(config_path: str) -> None:
    """Validate CONFIG and its channels: print every error (exit 1) or a summary (exit 0).

    One pass finds them all: structure, names, ports, and what only building finds
    (functions that do not import, missing tables, stylesheets, encryption keys)."""
    from engine.config import ConfigError, load_config, summary

    try:
        config = load_config(config_path)  # builds the channels and loads the keys too
    except ConfigError as exc:
        click.echo(exc.format(None), err=True)
        sys.exit(1)
    click.echo(summary(config))


@cli.command("test")
@click.argument("paths", nargs=-1, type=click.Path())
def test_channels(paths: tuple[str, ...]) -> None:
    """Run channel tests: PATH... are *_test.yaml files or directories (default: channels/).

    Prints each failure with its file:line:column, expected and actual; exits 1 on any.
    """
    from engine.testing import format_report, run_tests

    report = run_tests(list(paths))
    click.echo(format_report(report))
    if not report.ok:
        sys.exit(1)


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--channel", help="Run this channel's steps and use its FHIR destination.")
@click.option("--destination", help="Which FHIR destination of the channel (default: first).")
@config_option
@click.option(
    "--validate/--no-validate",
    default=True,
    show_default=True,
    help="Check the bundle against the FHIR R4 models.",
)
@click.option(
    "--timezone",
    default="UTC",
    show_default=True,
    help="Zone for times without an offset (without --channel).",
)
def convert(file, channel, destination, config_path, validate, timezone) -> None:
    """Print the FHIR R4 transaction Bundle an analyst would get for the message(s) in FILE."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from engine.fhir.convert import UnsupportedMessage
    from engine.fhir.convert import convert as to_fhir
    from engine.fhir.convert import validate as check
    from engine.fhir.options import ConvertOptions
    from engine.hl7.message import Message, MessageError
    from engine.mllp.client import split_messages

    try:
        payloads = split_messages(Path(file).read_bytes())
    except OSError as exc:
        raise click.ClickException(f"cannot read {file}: {exc.strerror}") from None
    if not payloads:
        raise click.ClickException(f"{file}: no HL7 message (no segment starting with MSH)")
    target = pipeline = options = None
    if channel:
        _, pipeline = _load(config_path, build=True)
        if channel not in pipeline.channels:
            raise click.ClickException(
                f"no channel '{channel}' (channels: {', '.join(sorted(pipeline.channels))})"
            )
        fhir = [
            t.destination
            for t in pipeline.channels[channel].targets
            if t.destination.kind == "fhir" and destination in (None, t.destination.name)
        ]
        if not fhir:
            named = f" named '{destination}'" if destination else ""
            raise click.ClickException(f"channel '{channel}' has no FHIR destination{named}")
        target = fhir[0]
    else:
        try:
            options = ConvertOptions(timezone=ZoneInfo(timezone))
        except (ZoneInfoNotFoundError, ValueError):
            raise click.BadParameter(f"unknown time zone {timezone!r}") from None
    failed = False
    for payload in payloads:
        try:
            message = Message.from_bytes(payload)
            if target is None:
                bundle = to_fhir(message, options)
            else:
                result = pipeline.channels[channel].run(message)
                out = next((o for o in result.outputs if o.destination == target.name), None)
                if out is None:
                    why = result.reason or f"{result.status} at step {result.step}"
                    raise ValueError(f"channel '{channel}' produced no bundle: {why}")
                bundle = json.loads(out.payload)
            if validate:
                check(bundle)
        except (UnsupportedMessage, MessageError, ValueError) as exc:
            click.echo(f"{file}: {exc}", err=True)
            failed = True
            continue
        click.echo(json.dumps(bundle, indent=2, ensure_ascii=False))
    if failed:
        sys.exit(1)


@cli.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Write the routes, channel and channel-test schemas here (default: print).",
)
def schema(out_dir: str | None) -> None:
    """JSON Schema of routes.yaml and channel files, for editor completion and checks."""
    import engine.components  # noqa: F401  (register the step and destination kinds)
    from engine.config import to_json_schema
    from engine.testing_spec import channel_test_schema

    schemas = {
        "routes": to_json_schema("routes"),
        "channel": to_json_schema("channel"),
        "channel-test": channel_test_schema(),
    }
    if out_dir is None:
        click.echo(json.dumps(schemas, indent=2))
        return
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for kind, body in schemas.items():
        path = Path(out_dir) / f"{kind}.schema.json"
        path.write_text(json.dumps(body, indent=2) + "\n")
        click.echo(f"wrote {path}")


@cli.command()
def docs() -> None:
    """Print every component's settings: listeners, routes, steps and destinations, with
    examples."""
    import engine.components  # noqa: F401
    from engine.config import describe_all
    from engine.steps import STEP_KINDS

    click.echo(describe_all())
    click.echo("\nStep examples")
    click.echo("=============")
    for kind, cls in sorted(STEP_KINDS.items()):
        if cls.example:
            click.echo(f"\n{kind}:")
            for line in cls.example.splitlines():
                click.echo(f"  - {line}")


@cli.command()
@config_option
def reload(config_path: str) -> None:
    """Make the running engine re-read CONFIG (like SIGHUP), through its admin listener.

    Exits 1 when the engine refuses the new config (its errors are printed) or cannot be
    reached.
    """
    from engine.cli_ops import Admin

    _load(config_path, build=True)  # check it here first: the same errors, without a round trip
    _, body = Admin(config_path).call("POST", "/reload", ok=(200, 409))
    for line in body.get("messages", []):
        click.echo(line)
    if not body.get("ok"):
        sys.exit(1)


# send ------------------------------------------------------------------------------------
@cli.command()
@click.argument("address", metavar="HOST:PORT")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for each ACK.")
@click.option("--tls", is_flag=True, help="Connect with TLS.")
@click.option("--ca", type=click.Path(exists=True, dir_okay=False), help="CA to verify the server.")
@click.option("--cert", type=click.Path(exists=True, dir_okay=False), help="Client certificate.")
@click.option("--key", type=click.Path(exists=True, dir_okay=False), help="Client private key.")
@click.option("--server-name", help="Name to verify the server certificate against.")
def send(address, files, timeout, tls, ca, cert, key, server_name) -> None:
    """Send the messages in FILE... over MLLP and print each ACK code.

    Exits 1 when any ACK is not AA/CA, or on a timeout or connection error.
    """
    from engine.mllp.client import (
        BlockingMLLPClient,
        MLLPClientError,
        ack_code,
        split_messages,
        tls_context,
    )

    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise click.BadParameter("expected HOST:PORT, e.g. 127.0.0.1:2575", param_hint="HOST:PORT")
    host = host.strip("[]")
    batches = []
    for name in files:
        try:
            data = Path(name).read_bytes()
        except OSError as exc:
            raise click.ClickException(f"cannot read {name}: {exc.strerror}") from None
        msgs = split_messages(data)
        if not msgs:
            raise click.ClickException(f"{name}: no HL7 message (no segment starting with MSH)")
        batches.append((name, msgs))
    ctx = tls_context(ca, cert, key) if (tls or ca or cert) else None
    failed = 0
    try:
        client = BlockingMLLPClient(
            host, int(port), timeout=timeout, tls=ctx, server_hostname=server_name
        )
    except (OSError, MLLPClientError) as exc:
        raise click.ClickException(f"cannot connect to {address}: {exc}") from None
    with client:
        for name, msgs in batches:
            for i, msg in enumerate(msgs, 1):
                control_id = _control_id(msg)
                label = f"{name}#{i}" if len(msgs) > 1 else name
                try:
                    ack = client.send(msg)
                except (OSError, MLLPClientError) as exc:
                    click.echo(f"{label} {control_id}: FAILED {exc}")
                    sys.exit(1)
                code = ack_code(ack) or "??"
                click.echo(f"{label} {control_id}: {code}")
                if code not in ("AA", "CA"):
                    failed += 1
    if failed:
        sys.exit(1)


def _control_id(msg: bytes) -> str:
    first = msg.split(b"\r", 1)[0].decode("latin-1")
    parts = first.split(first[3]) if len(first) > 3 else []
    return parts[9] if len(parts) > 9 else ""


# messages -------------------------------------------------------------------------------
def _parse_time(value: str | None) -> float | None:
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


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def _store_engine(config_path: str):
    config, _ = _load(config_path)
    from engine.store.db import create_store_engine

    return create_store_engine(config.store)


_STATUSES = ["received", "routed", "unrouted", "filtered", "errored", "rejected"]


def message_filters(f):
    """The search options shared by `messages` and `messages search`."""
    for option in reversed((
        click.option("--control-id", help="MSH-10."),
        click.option("--patient-id", help="PID-3.1 (first repetition)."),
        click.option("--type", "message_type", help="MSH-9.1, or type^trigger (ADT^A01)."),
        click.option("--status", type=click.Choice(_STATUSES)),
        click.option("--listener"),
        click.option("--since", help="ISO time or age (15m, 2h, 1d)."),
        click.option("--until", help="ISO time or age."),
        click.option("--limit", default=50, show_default=True),
        click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table."),
    )):  # fmt: skip
        f = option(f)
    return f


def _print_messages(config_path, as_json, since, until, limit, **filters) -> None:
    from engine.admin.search import Search, search_messages

    engine = _store_engine(config_path)
    f = Search(since=_parse_time(since), until=_parse_time(until), limit=limit, **filters)
    try:
        rows = search_messages(engine, f)
    except Exception as exc:
        raise click.ClickException(f"cannot read the store: {_short(exc)}") from None
    if as_json:
        for row in rows:
            row["received_at"] = _iso(row["received_at"])
            click.echo(json.dumps(row))
        return
    if not rows:
        click.echo("no messages match")
        return
    click.echo(f"{'ID':>8}  {'RECEIVED (UTC)':23}  {'LISTENER':12} {'TYPE':8} {'CONTROL ID':22} "
               f"{'STATUS':9} ACK")  # fmt: skip
    for r in rows:
        click.echo(_message_line(r))


def _message_line(r: dict) -> str:
    kind = f"{r['message_type']}^{r['trigger']}" if r["trigger"] else r["message_type"]
    return (
        f"{r['id']:>8}  {_iso(r['received_at'])[:23]:23}  {r['listener'][:12]:12} "
        f"{kind[:8]:8} {r['control_id'][:22]:22} {r['status']:9} {r['ack_code'] or '-'}"
    )


@cli.group(invoke_without_command=True)
@config_option
@message_filters
@click.pass_context
def messages(ctx, config_path, as_json, **filters):
    """List stored messages, newest first (see also: messages search, messages show ID)."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = {"config_path": config_path, "as_json": as_json}
        return
    _print_messages(config_path, as_json, **filters)


@messages.command("search")
@config_option
@message_filters
def messages_search(config_path, as_json, **filters):
    """Search stored messages by control id, patient id, type, status, listener and time."""
    _print_messages(config_path, as_json, **filters)


@messages.command("show")
@click.argument("message_id", type=int)
@click.option("--raw", is_flag=True, help="Write the raw bytes as received to stdout.")
@click.pass_context
def messages_show(ctx, message_id: int, raw: bool) -> None:
    """Show one stored message: metadata, the ACK and the message as received."""
    from engine.store.crypto import SealError, sealer_from_options
    from engine.store.queries import get_message

    engine = _store_engine(ctx.obj["config_path"])
    try:  # bodies may be sealed at rest (store_options.encryption)
        sealer = sealer_from_options(_load(ctx.obj["config_path"])[0].store_options)
        row = get_message(engine, message_id, sealer)
    except SealError as exc:
        raise click.ClickException(str(exc)) from None
    if row is None:
        raise click.ClickException(f"no message with id {message_id}")
    if raw:
        sys.stdout.buffer.write(row["raw"])
        return
    body = row.pop("raw")
    ack = row.pop("ack")
    row.pop("dedup_key", None)
    row.pop("body_hash", None)
    row["received_at"] = _iso(row["received_at"])
    charset = row.get("charset") or "latin-1"
    text = body.decode(charset, errors="replace")
    ack_text = ack.decode(charset, errors="replace") if ack else None
    if ctx.obj["as_json"]:
        click.echo(json.dumps({**row, "message": text, "ack": ack_text}))
        return
    later = row.pop("reprocessed_as")
    row["reprocessed_as"] = ", ".join(map(str, later)) or None
    for k, v in row.items():
        click.echo(f"{k:20} {'' if v is None else v}")
    click.echo("\n-- ACK sent --")
    click.echo((ack_text or "(none)").replace("\r", "\n").rstrip("\n"))
    click.echo("\n-- message as received --")
    click.echo(text.replace("\r\n", "\n").replace("\r", "\n").rstrip("\n"))


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:300]


# queue -----------------------------------------------------------------------------------
def _queue(config_path: str):
    from engine.delivery.queue import QueueStore

    return QueueStore(_store_engine(config_path), f"cli-{os.getpid()}")


def _audit(queue, action: str, target: str, detail: dict | None = None) -> None:
    """Admin actions from the command line go to the same audit log as the API's."""
    import getpass

    from engine.admin.audit import record

    try:
        user = getpass.getuser()
    except Exception:  # no user name in some containers
        user = str(os.getuid())
    record(queue.engine, f"cli:{user}", action, target, detail, source="cli")


def _split_dest(text: str) -> tuple[str, str]:
    channel, sep, dest = text.partition("/")
    if not sep or not channel or not dest:
        raise click.BadParameter("write CHANNEL/DESTINATION, e.g. lab-results/epic")
    return channel, dest


@cli.group()
def queue() -> None:
    """Delivery queues: list, show, replay dead deliveries, skip a head, pause, resume.

    A running engine picks changes up within a second.
    """


@queue.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True)
def queue_list(config_path: str, as_json: bool) -> None:
    """Every destination: open deliveries by state, dead letters, oldest age, paused."""
    rows = _queue(config_path).depths(time.time())
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    if not rows:
        click.echo("no deliveries")
        return
    click.echo(f"{'DESTINATION':32} {'PENDING':>8} {'IN FLIGHT':>9} {'RETRY':>6} {'HELD':>5} "
               f"{'DEAD':>6} {'OLDEST':>9}  STATE")  # fmt: skip
    for r in rows:
        state = "paused" if r["paused"] else ("held" if r.get("held") else "running")
        click.echo(
            f"{r['channel'] + '/' + r['destination']:32} {r.get('pending', 0):>8} "
            f"{r.get('in_flight', 0):>9} {r.get('retry', 0):>6} {r.get('held', 0):>5} "
            f"{r.get('dead', 0):>6} {r['oldest_age']:>8.0f}s  {state}"
        )


@queue.command("show")
@click.argument("destination", metavar="CHANNEL/DESTINATION")
@config_option
@click.option("--limit", default=20, show_default=True)
def queue_show(destination: str, config_path: str, limit: int) -> None:
    """The head of one queue (and its dead letters), oldest first."""
    channel, dest = _split_dest(destination)
    rows = _queue(config_path).head(channel, dest, limit)
    if not rows:
        click.echo("queue is empty")
        return
    for r in rows:
        nxt = f" next {_iso(r['next_attempt_at'])}" if r["next_attempt_at"] else ""
        err = f"  {r['last_error'][:120]}" if r["last_error"] else ""
        click.echo(f"{r['id']:>8} message {r['message_id']:<8} {r['status']:9} "
                   f"attempts {r['attempts']}{nxt}{err}")  # fmt: skip


@queue.command("replay")
@click.argument("destination", metavar="[CHANNEL/DESTINATION]", required=False)
@config_option
@click.option("--id", "ids", type=int, multiple=True, help="Delivery id (repeatable).")
@click.option("--all", "all_", is_flag=True, help="Every dead delivery of every destination.")
@click.option("--status", type=click.Choice(["dead", "held", "skipped", "any"]), default="dead",
              show_default=True)  # fmt: skip
def queue_replay(destination, config_path, ids, all_, status) -> None:
    """Put dead (or held, skipped) deliveries back in their queue, in their original place."""
    if not (destination or ids or all_):
        raise click.UsageError("name CHANNEL/DESTINATION, --id N, or --all")
    channel = dest = None
    if destination:
        channel, dest = _split_dest(destination)
    q = _queue(config_path)
    n = q.replay(ids=list(ids) or None, channel=channel, destination=dest, status=status,
                 now=time.time())  # fmt: skip
    _audit(q, "replay", destination or ("all" if all_ else "deliveries"),
           {"ids": list(ids), "status": status, "replayed": n})  # fmt: skip
    click.echo(f"replayed {n} deliveries")


@queue.command("skip")
@click.argument("destination", metavar="CHANNEL/DESTINATION")
@config_option
def queue_skip(destination: str, config_path: str) -> None:
    """Skip the head of a queue (a poisoned message): it is kept, marked skipped."""
    channel, dest = _split_dest(destination)
    q = _queue(config_path)
    head = q.skip_head(channel, dest, time.time())
    if head is None:
        raise click.ClickException(f"{destination}: the queue is empty")
    _audit(q, "skip", destination, {"delivery": head})
    click.echo(f"skipped delivery {head}")


@queue.command("pause")
@click.argument("destination", metavar="CHANNEL/DESTINATION")
@config_option
def queue_pause(destination: str, config_path: str) -> None:
    """Stop delivering to a destination (its queue keeps filling)."""
    q = _queue(config_path)
    q.set_paused(*_split_dest(destination), True)
    _audit(q, "pause", destination)
    click.echo(f"paused {destination}")


@queue.command("resume")
@click.argument("destination", metavar="CHANNEL/DESTINATION")
@config_option
def queue_resume(destination: str, config_path: str) -> None:
    """Deliver to a paused destination again."""
    q = _queue(config_path)
    q.set_paused(*_split_dest(destination), False)
    _audit(q, "resume", destination)
    click.echo(f"resumed {destination}")


# retention -------------------------------------------------------------------------------
class _BatchProgress:
    """A batch counter on the terminal (stderr) for long store operations; never stops them."""

    def __init__(self, label: str):
        self.label = label
        self.batches = 0
        self.tty = sys.stderr.isatty()

    def __call__(self) -> bool:
        self.batches += 1
        if self.tty:
            click.echo(f"\r{self.label}: {self.batches} batches", nl=False, err=True)
        return False

    def done(self) -> None:
        if self.tty and self.batches:
            click.echo("", err=True)


@cli.command()
@config_option
@click.option("--max-age", help="Prune messages older than this (default: the config's "
              "retention rules).")  # fmt: skip
@click.option("--status", "statuses", multiple=True, help="Only these statuses (with --max-age).")
@click.option("--batch-size", default=500, show_default=True)
@click.option("--max-batches", type=int, help="Stop after this many batches per step.")
@click.option("--no-compact", is_flag=True, help="Do not empty what the storage modes drop.")
@click.option("--json", "as_json", is_flag=True)
def prune(config_path, max_age, statuses, batch_size, max_batches, no_compact, as_json) -> None:
    """Delete old messages and their history in small batches (safe while the engine runs);
    a message with a delivery still to make is never deleted."""
    from engine.config.spec import parse_duration
    from engine.store.retention import Policy, policies_from_options, retention_pass

    config, _ = _load(config_path)
    engine = _store_engine(config_path)
    retention = config.store_options.get("retention") or {}
    if max_age:
        try:
            policies = [Policy(parse_duration(max_age), tuple(statuses) or None)]
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--max-age") from None
    else:
        policies = policies_from_options(retention)
    modes = {} if no_compact else {n: c.get("storage") for n, c in config.channels.items()}
    progress = _BatchProgress("pruning") if not as_json else None
    report = retention_pass(
        engine, time.time(), policies=policies, modes=modes,
        default_mode="everything" if no_compact else config.store_options.get("storage"),
        compact_after=retention.get("compact_after", 3600.0), batch_size=batch_size,
        max_batches=max_batches, pause=retention.get("pause", 0.01), should_stop=progress,
    )  # fmt: skip
    if progress:
        progress.done()
    p = report.pruned
    counts = {"messages": p.messages, "channel_runs": p.channel_runs, "deliveries": p.deliveries,
              "files": p.files, "batches": p.batches, "complete": p.complete}  # fmt: skip
    if as_json:
        click.echo(json.dumps(counts))
    else:
        click.echo(f"pruned {p.messages} messages, {p.deliveries} deliveries, "
                   f"{p.channel_runs} channel runs, {p.files} files in {p.batches} batches"
                   + ("" if p.complete else " (stopped early: run again)"))  # fmt: skip


@cli.command("rotate-keys")
@config_option
@click.option("--batch-size", default=500, show_default=True)
def rotate_keys(config_path: str, batch_size: int) -> None:
    """Re-seal stored bodies with the current encryption key (and encrypt plaintext rows), in
    small batches; afterwards older keys can be removed from the config."""
    from engine.app import _sealer
    from engine.config import ConfigError
    from engine.store.crypto import rotate

    config, _ = _load(config_path)
    try:
        sealer = _sealer(config)
    except ConfigError as exc:
        click.echo(exc.format(None), err=True)
        sys.exit(1)
    if not sealer.active:
        raise click.ClickException("encryption is not configured (store_options.encryption)")
    engine = _store_engine(config_path)
    counts = rotate(engine, sealer, batch_size=batch_size)
    from engine.admin.audit import record

    record(engine, "cli", "rotate-keys", "store", counts, source="cli")
    click.echo(f"re-sealed {counts.get('messages', 0)} messages and "
               f"{counts.get('deliveries', 0)} deliveries with key '{sealer.current}'")  # fmt: skip


# certs -----------------------------------------------------------------------------------
@cli.group()
def certs() -> None:
    """Development certificates."""


@certs.command("init")
@click.option("--dir", "directory", default="certs", show_default=True, type=click.Path())
@click.option("--host", "hosts", multiple=True, help="Extra server name or IP (repeatable).")
@click.option("--days", default=825, show_default=True)
@click.option("--force", is_flag=True, help="Overwrite existing files.")
def certs_init(directory: str, hosts: tuple[str, ...], days: int, force: bool) -> None:
    """Make a dev CA, a server and a client certificate (keys are git-ignored)."""
    from engine.certs import init_certs

    names = ["localhost", "127.0.0.1", "::1", *hosts]
    try:
        paths = init_certs(Path(directory), hosts=names, days=days, force=force)
    except FileExistsError as exc:
        raise click.ClickException(str(exc)) from None
    for p in paths:
        click.echo(f"wrote {p}")


# migrate ---------------------------------------------------------------------------------
@cli.command()
@config_option
def migrate(config_path: str) -> None:
    """Bring the store's schema up to date (run also does this on start)."""
    from engine.store import migrations

    engine = _store_engine(config_path)
    try:
        migrations.upgrade(engine)
    except Exception as exc:
        raise click.ClickException(f"migration failed: {_short(exc)}") from None
    click.echo(f"store at revision {migrations.current(engine)}")


from engine import cli_ops  # noqa: E402,F401  (status, replay, tail: commands on the admin API)


def main() -> None:
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # never a traceback to a user
        if os.environ.get("SWITCHBOARD_DEBUG"):
            raise
        click.echo(
            f"switchboard: unexpected error: {_short(exc)} (set SWITCHBOARD_DEBUG=1 to see the "
            "traceback, and please report it)",
            err=True,
        )
        sys.exit(70)
