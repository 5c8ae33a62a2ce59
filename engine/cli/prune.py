"""Store upkeep: `switchboard prune` (retention by hand) and `switchboard migrate`."""

from __future__ import annotations

import json
import sys
import time

import click

from engine.cli.common import config_option, load, short, store_engine


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


@click.command()
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

    config, _ = load(config_path)
    engine = store_engine(config)
    retention = config.store_options.retention
    if max_age:
        try:
            policies = [Policy(parse_duration(max_age), tuple(statuses) or None)]
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--max-age") from None
    else:
        policies = policies_from_options(retention)
    modes = {} if no_compact else {n: c.storage for n, c in config.channels.items()}
    progress = _BatchProgress("pruning") if not as_json else None
    report = retention_pass(
        engine, time.time(), policies=policies, modes=modes,
        default_mode="everything" if no_compact else config.store_options.storage,
        compact_after=retention.compact_after, batch_size=batch_size,
        max_batches=max_batches, pause=retention.pause, should_stop=progress,
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


@click.command()
@config_option
def migrate(config_path: str) -> None:
    """Bring the store's schema up to date (run also does this on start)."""
    from engine.store import migrations

    engine = store_engine(load(config_path)[0])
    try:
        migrations.upgrade(engine)
    except Exception as exc:
        raise click.ClickException(f"migration failed: {short(exc)}") from None
    click.echo(f"store at revision {migrations.current(engine)}")


COMMANDS = [prune, migrate]
