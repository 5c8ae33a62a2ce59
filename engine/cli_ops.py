"""Commands that talk to a running engine through its admin API: status, replay, tail."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import click

from engine.cli import _load, _message_line, cli, config_option


class Admin:
    """The running engine's admin API, found from the config (listen address and token)."""

    def __init__(self, config_path: str):
        config, _ = _load(config_path)
        if not config.admin:
            raise click.ClickException(
                "no admin listener in the config: add "
                "'admin: {listen: \"tcp:8480:interface=127.0.0.1\"}' and restart the engine"
            )
        from engine.config.endpoints import parse_endpoint

        ep = parse_endpoint(config.admin["listen"], server=True)
        host = ep.host if ep.host not in (None, "", "0.0.0.0", "::") else "127.0.0.1"
        self.base = f"http://{host}:{ep.port}"
        self.token = config.admin.get("token")

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


@cli.command()
@config_option
@click.option("--json", "as_json", is_flag=True)
def status(config_path: str, as_json: bool) -> None:
    """Listeners, channels and destinations of the running engine: health, queues, paused."""
    _, data = Admin(config_path).call("GET", "/api/status")
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo("LISTENER          KIND       RUNNING  ACK")
    for item in data.get("listeners", []):
        click.echo(f"{item['name'][:16]:17} {item['kind']:10} {item['running']!s:8} "
                   f"{item.get('ack') or '-'}")  # fmt: skip
    click.echo()
    click.echo("DESTINATION                      HEALTH     PAUSED  OPEN   DEAD  OLDEST")
    for d in data.get("destinations", []):
        depth = d.get("depth") or {}
        open_ = sum(v for k, v in depth.items() if k != "dead")
        name = f"{d['channel']}/{d['destination']}"[:32]
        paused = "yes" if d.get("paused") else "no"
        click.echo(f"{name:32} {d.get('health') or '-':10} {paused:7} {open_:>5} "
                   f"{depth.get('dead', 0):>6} {d.get('oldest_age', 0):>6.0f}s")  # fmt: skip


@cli.command()
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


@cli.command()
@config_option
@click.option("--interval", default=1.0, show_default=True, help="Seconds between polls.")
@click.option("--count", type=int, help="Stop after this many messages.")
@click.option("--after", type=int, help="Start after this message id (default: the newest).")
@click.option("--json", "as_json", is_flag=True, help="JSON lines.")
def tail(config_path: str, interval: float, count: int | None, after: int | None,
         as_json: bool) -> None:  # fmt: skip
    """Follow the messages the running engine takes in, as they arrive (Ctrl-C stops)."""
    admin = Admin(config_path)
    if after is None:
        _, rows = admin.call("GET", "/api/messages?limit=1")
        last = rows["messages"][0]["id"] if rows.get("messages") else 0
    else:
        last = after
    seen = 0
    try:
        while count is None or seen < count:
            query = urllib.parse.urlencode({"limit": 200})
            _, rows = admin.call("GET", f"/api/messages?{query}")
            new = sorted((r for r in rows.get("messages", []) if r["id"] > last),
                         key=lambda r: r["id"])  # fmt: skip
            for r in new:
                last = r["id"]
                seen += 1
                click.echo(json.dumps(r) if as_json else _message_line(r))
                if count is not None and seen >= count:
                    return
            time.sleep(interval)
    except KeyboardInterrupt:
        return


__all__ = ["Admin"]
