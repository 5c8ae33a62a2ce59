"""`switchboard certs init`: development certificates."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
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


COMMANDS = [certs]
