"""`switchboard replay ID...`: messages taken in again, or their deliveries re-queued."""

from __future__ import annotations

import sys

import click

from engine.cli.common import Admin, config_option


@click.command()
@click.argument("message_ids", nargs=-1, type=int, required=True)
@config_option
@click.option("--body-file", type=click.Path(exists=True, dir_okay=False),
              help="Replay one message with this edited body (a new message).")  # fmt: skip
def replay(message_ids: tuple[int, ...], config_path: str, body_file: str | None) -> None:
    """Replay messages. One that went nowhere (errored, rejected, unrouted, filtered) is taken
    in again on the current config, as a new message linked to it; one that was routed has
    its dead, held or skipped deliveries put back in their queues. With --body-file, one
    message is taken in again with an edited body."""
    admin = Admin(config_path)
    if body_file:
        if len(message_ids) != 1:
            raise click.UsageError("--body-file replays exactly one message")
        with open(body_file, "rb") as f:
            body = f.read().decode("utf-8", errors="replace")
        _, out = admin.call("POST", f"/api/messages/{message_ids[0]}/replay", {"body": body})
        click.echo(_taken_in(out))
        return
    total, requeued, failed, lines = 0, 0, [], []
    with click.progressbar(message_ids, label="replaying", file=sys.stderr) as bar:
        for mid in bar:
            code, out = admin.call("POST", f"/api/messages/{mid}/replay", {},
                                   ok=(200, 404, 409, 503))  # fmt: skip
            if code != 200:
                failed.append(f"message {mid}: {out.get('error') or code}")
            elif "new_message_id" in out:
                lines.append(_taken_in(out))
            else:
                total += int(out.get("replayed") or 0)
                requeued += 1
    for line in lines:
        click.echo(line)
    if requeued or not (lines or failed):
        click.echo(f"replayed {total} deliveries of {requeued} messages")
    for line in failed:
        click.echo(f"switchboard: {line}", err=True)
    if failed:
        sys.exit(1)


def _taken_in(out: dict) -> str:
    return (f"message {out['message_id']} taken in again as message {out['new_message_id']}: "
            f"{out['status']}, {out.get('ack_code') or 'no ACK'}")  # fmt: skip


COMMANDS = [replay]
