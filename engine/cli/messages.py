"""`switchboard messages [search|show]`: stored messages, read from the store."""

from __future__ import annotations

import json
import sys

import click

from engine.cli.common import (
    MESSAGE_HEADER,
    config_option,
    iso,
    load,
    message_line,
    parse_time,
    short,
    store_engine,
)

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

    engine = store_engine(load(config_path)[0])
    f = Search(since=parse_time(since), until=parse_time(until), limit=limit, **filters)
    try:
        rows = search_messages(engine, f)
    except Exception as exc:
        raise click.ClickException(f"cannot read the store: {short(exc)}") from None
    if as_json:
        for row in rows:
            row["received_at"] = iso(row["received_at"])
            click.echo(json.dumps(row))
        return
    if not rows:
        click.echo("no messages match")
        return
    click.echo(MESSAGE_HEADER)
    for r in rows:
        click.echo(message_line(r))


@click.group(invoke_without_command=True)
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

    config, _ = load(ctx.obj["config_path"])
    engine = store_engine(config)
    try:  # bodies may be sealed at rest (store_options.encryption)
        sealer = sealer_from_options(config.store_options)
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
    row["received_at"] = iso(row["received_at"])
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


COMMANDS = [messages]
