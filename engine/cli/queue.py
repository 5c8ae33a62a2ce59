"""`switchboard queue ...`: the delivery queues, read and acted on."""

from __future__ import annotations

import getpass
import json
import os
import time

import click

from engine.cli.common import config_option, iso, load, store_engine


def _queue(config_path: str):
    from engine.delivery.queue import QueueStore

    return QueueStore(store_engine(load(config_path)[0]), f"cli-{os.getpid()}")


def _audit(queue, action: str, target: str, detail: dict | None = None) -> None:
    """Admin actions from the command line go to the same audit log as the API's."""
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


@click.group()
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
        nxt = f" next {iso(r['next_attempt_at'])}" if r["next_attempt_at"] else ""
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


COMMANDS = [queue]
