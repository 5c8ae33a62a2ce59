"""`switchboard rotate-keys`: re-seal stored bodies with the current encryption key."""

from __future__ import annotations

import sys

import click

from engine.cli.common import config_option, load, operator, store_engine


@click.command("rotate-keys")
@config_option
@click.option("--batch-size", default=500, show_default=True)
def rotate_keys(config_path: str, batch_size: int) -> None:
    """Re-seal stored bodies with the current encryption key (and encrypt plaintext rows), in
    small batches; afterwards older keys can be removed from the config."""
    from engine.admin.actions import record
    from engine.app import _sealer
    from engine.config import ConfigError
    from engine.store.crypto import rotate

    config, _ = load(config_path)
    try:
        sealer = _sealer(config)
    except ConfigError as exc:
        click.echo(exc.format(None), err=True)
        sys.exit(1)
    if not sealer.active:
        raise click.ClickException("encryption is not configured (store_options.encryption)")
    engine = store_engine(config)
    counts = rotate(engine, sealer, batch_size=batch_size)
    record(engine, operator(), "rotate-keys", "store", counts)
    click.echo(f"re-sealed {counts.get('messages', 0)} messages and "
               f"{counts.get('deliveries', 0)} deliveries with key '{sealer.current}'")  # fmt: skip


COMMANDS = [rotate_keys]
