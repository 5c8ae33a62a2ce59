"""`switchboard replay ID...`: messages taken in again, or their deliveries re-queued.

While the engine runs this goes through its admin API; while it is stopped, a routed
message's deliveries are put back in their queues in the store directly (audited the same
way), and what needs the engine's intake (taking a message in again) is refused, saying so.
"""

from __future__ import annotations

import sys
import time

import click

from engine.cli.common import config_option, engine_or_store, operator, queue_store, said_store_path


@click.command()
@click.argument("message_ids", nargs=-1, type=int, required=True)
@config_option
@click.option("--body-file", type=click.Path(exists=True, dir_okay=False),
              help="Replay one message with this edited body (a new message).")  # fmt: skip
def replay(message_ids: tuple[int, ...], config_path: str, body_file: str | None) -> None:
    """Replay messages. One that went nowhere (errored, rejected, unrouted, filtered) is taken
    in again on the current config, as a new message linked to it; one that was routed has
    its dead, held or skipped deliveries put back in their queues. With --body-file, one
    message is taken in again with an edited body (both need the engine running)."""
    if body_file and len(message_ids) != 1:
        raise click.UsageError("--body-file replays exactly one message")
    config, api = engine_or_store(config_path)
    if body_file:
        if api is None:
            raise click.ClickException(
                "an edited body is taken in through its listener: start the engine "
                "(switchboard run) and run this again. Nothing was changed."
            )
        with open(body_file, "rb") as f:
            body = f.read().decode("utf-8", errors="replace")
        _, out = api.call("POST", f"/api/messages/{message_ids[0]}/replay", {"body": body})
        click.echo(_taken_in(out))
        return
    one = _through_the_api(api) if api is not None else _in_the_store(config)
    total, requeued, failed, lines = 0, 0, [], []
    with click.progressbar(message_ids, label="replaying", file=sys.stderr) as bar:
        for mid in bar:
            error, out = one(mid)
            if error:
                failed.append(f"message {mid}: {error}")
            elif "new_message_id" in out:
                lines.append(_taken_in(out))
            else:
                total += int(out.get("replayed") or 0)
                requeued += 1
    for line in lines:
        click.echo(line)
    if requeued or not (lines or failed):
        click.echo(f"replayed {total} deliveries of {requeued} messages")
    if api is None and requeued:
        said_store_path(config)
    for line in failed:
        click.echo(f"switchboard: {line}", err=True)
    if failed:
        sys.exit(1)


def _through_the_api(api):
    """Replay one message through the engine: (error, answer)."""

    def one(mid: int):
        code, out = api.call("POST", f"/api/messages/{mid}/replay", {},
                             ok=(200, 404, 409, 503))  # fmt: skip
        return (None, out) if code == 200 else (out.get("error") or str(code), out)

    return one


def _in_the_store(config):
    """Replay one message in the store (no engine): (error, answer)."""
    from engine.admin import actions, search

    queue, who = queue_store(config), operator()

    def one(mid: int):
        status = search.message_status(queue.engine, mid)
        if status is None:
            return f"no message {mid}", None
        if status in actions.REPROCESS_STATUSES:
            return (f"it went nowhere ({status}); taking it in again needs the engine: start it "
                    "(switchboard run) and run this again", None)  # fmt: skip
        return None, actions.replay_deliveries_of(queue, who, mid, time.time())

    return one


def _taken_in(out: dict) -> str:
    return (f"message {out['message_id']} taken in again as message {out['new_message_id']}: "
            f"{out['status']}, {out.get('ack_code') or 'no ACK'}")  # fmt: skip


COMMANDS = [replay]
