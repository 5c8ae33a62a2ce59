"""`switchboard queue ...`: the delivery queues. list and show read the store; the actions
(replay, skip, pause, resume) go through the running engine's admin API, or change the store
directly when the engine does not run (engine.admin.actions either way, audited)."""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import click

from engine.cli.common import act, config_option, iso, load, queue_store


def _queue(config_path: str):
    return queue_store(load(config_path)[0])


def _api_path(channel: str, destination: str, action: str) -> str:
    return f"/api/queues/{quote(channel, safe='')}/{quote(destination, safe='')}/{action}"


def _split_dest(text: str) -> tuple[str, str]:
    channel, sep, dest = text.partition("/")
    if not sep or not channel or not dest:
        raise click.BadParameter("write CHANNEL/DESTINATION, e.g. lab-results/epic")
    return channel, dest


@click.group()
def queue() -> None:
    """Delivery queues: list, show, replay dead deliveries, skip a head, pause, resume.

    While the engine runs, actions go through its admin API (audited, and its worker acts at
    once); while it is stopped, they change the store directly (audited too) and say so.
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

    def through_engine(api):
        body = {"status": status, **({"ids": list(ids)} if ids else {})}
        if channel:
            body.update(channel=channel, destination=dest)
        elif not ids:
            body["all"] = True
        return api.call("POST", "/api/replay", body)[1]["replayed"]

    def on_store(queue, who):
        from engine.admin import actions

        return actions.replay(queue, who, now=time.time(), ids=list(ids) or None,
                              channel=channel, destination=dest, status=status)  # fmt: skip

    act(config_path, through_engine, on_store, lambda n: f"replayed {n} deliveries")


@queue.command("skip")
@click.argument("destination", metavar="CHANNEL/DESTINATION")
@config_option
def queue_skip(destination: str, config_path: str) -> None:
    """Skip the head of a queue (a poisoned message): it is kept, marked skipped."""
    channel, dest = _split_dest(destination)

    def on_store(queue, who):
        from engine.admin import actions

        head = actions.skip(queue, who, channel, dest, time.time())
        if head is None:  # through the engine, the API's 404 says the same
            raise click.ClickException(actions.empty_queue(channel, dest))
        return head

    act(config_path, lambda api: api.call("POST", _api_path(channel, dest, "skip"))[1]["skipped"],
        on_store, lambda head: f"skipped delivery {head}")  # fmt: skip


def _set_paused(destination: str, config_path: str, paused: bool) -> None:
    channel, dest = _split_dest(destination)
    action = "pause" if paused else "resume"

    def on_store(queue, who):
        from engine.admin import actions

        return actions.set_paused(queue, who, channel, dest, paused)

    # through the engine, its worker is woken: it stops or starts at once
    act(config_path, lambda api: api.call("POST", _api_path(channel, dest, action)), on_store,
        lambda _: f"{'paused' if paused else 'resumed'} {destination}")  # fmt: skip


@queue.command("pause")
@click.argument("destination", metavar="CHANNEL/DESTINATION")
@config_option
def queue_pause(destination: str, config_path: str) -> None:
    """Stop delivering to a destination (its queue keeps filling)."""
    _set_paused(destination, config_path, True)


@queue.command("resume")
@click.argument("destination", metavar="CHANNEL/DESTINATION")
@config_option
def queue_resume(destination: str, config_path: str) -> None:
    """Deliver to a paused destination again."""
    _set_paused(destination, config_path, False)


COMMANDS = [queue]
