"""The ``switchboard`` command line: the click group and ``main`` (the console script).

One module per command group; each imports only :mod:`engine.cli.common` (and the engine
modules it drives), and this module registers their commands:

- run.py       run, reload            (the engine process)
- check.py     check, test, schema, docs, convert   (configs and channels, offline)
- send.py      send                   (an MLLP client)
- messages.py  messages [search|show] (the store)
- queue.py     queue list|show|replay|skip|pause|resume
- replay.py    replay                 (messages)
- status.py    status, tail           (the running engine's admin API)
- prune.py     prune, migrate         (store upkeep)
- keys.py      rotate-keys
- certs.py     certs init
"""

from __future__ import annotations

import os
import sys

import click

from engine import __version__
from engine.cli import certs, check, keys, messages, prune, queue, replay, run, send, status
from engine.cli.common import short


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="switchboard")
def cli() -> None:
    """Switchboard, an HL7 v2 interface engine."""


for module in (run, check, send, messages, queue, replay, status, prune, keys, certs):
    for command in module.COMMANDS:
        cli.add_command(command)


def main() -> None:
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # never a traceback to a user
        if os.environ.get("SWITCHBOARD_DEBUG"):
            raise
        click.echo(
            f"switchboard: unexpected error: {short(exc)} (set SWITCHBOARD_DEBUG=1 to see the "
            "traceback, and please report it)",
            err=True,
        )
        sys.exit(70)
