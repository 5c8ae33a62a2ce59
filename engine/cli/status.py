"""The running engine through its admin API: `switchboard status` and `switchboard tail`."""

from __future__ import annotations

import json
import time
import urllib.parse

import click

from engine.cli.common import admin_api, config_option, message_line


@click.command()
@config_option
@click.option("--json", "as_json", is_flag=True)
def status(config_path: str, as_json: bool) -> None:
    """Listeners, channels and destinations of the running engine: health, queues, paused."""
    _, data = admin_api(config_path).call("GET", "/api/status")
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


@click.command()
@config_option
@click.option("--interval", default=1.0, show_default=True, help="Seconds between polls.")
@click.option("--count", type=int, help="Stop after this many messages.")
@click.option("--after", type=int, help="Start after this message id (default: the newest).")
@click.option("--json", "as_json", is_flag=True, help="JSON lines.")
def tail(config_path: str, interval: float, count: int | None, after: int | None,
         as_json: bool) -> None:  # fmt: skip
    """Follow the messages the running engine takes in, as they arrive (Ctrl-C stops)."""
    admin = admin_api(config_path)
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
                click.echo(json.dumps(r) if as_json else message_line(r))
                if count is not None and seen >= count:
                    return
            time.sleep(interval)
    except KeyboardInterrupt:
        return


COMMANDS = [status, tail]
