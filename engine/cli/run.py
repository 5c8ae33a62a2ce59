"""`switchboard run` (the engine in the foreground) and `switchboard reload`."""

from __future__ import annotations

import gc
import sys
import time

import click

from engine import __version__
from engine.cli.common import admin_api, config_option, load

GC_YOUNG_THRESHOLD = 10_000  # see run()


@click.command()
@config_option
def run(config_path: str) -> None:
    """Start the engine on CONFIG; SIGTERM or SIGINT stops it cleanly."""
    started = time.perf_counter()
    from twisted.internet import reactor

    from engine.app import Switchboard
    from engine.context import Context
    from engine.lifecycle import ListenError, install_signal_handlers
    from engine.logging import configure_logging, get_logger
    from engine.metrics import Metrics

    metrics = Metrics()
    # validated and built in one pass: what was built (functions, tables...) is what runs
    config, pipeline = load(config_path, Context(reactor=reactor, metrics=metrics))
    configure_logging(config.logging.level, config.logging.format)
    log = get_logger("switchboard")
    engine = Switchboard(config, reactor, pipeline=pipeline, metrics=metrics)
    stopping = []

    def stop(name: str) -> None:
        if stopping:
            log.info("already stopping", signal=name)
            return
        stopping.append(name)
        log.info("stopping", signal=name)
        reactor.stop()

    # before the start: a signal while the store migrates is acted on once the reactor runs
    install_signal_handlers(reactor, stop, engine.reload)
    try:
        engine.startService()  # listeners bind first: a busy port touches nothing else
    except ListenError as exc:
        click.echo(f"switchboard: {exc}. {exc.hint} Nothing was started.", err=True)
        sys.exit(1)
    except Exception as exc:  # store unreachable, bad certificate...
        click.echo(f"switchboard: could not start: {exc}", err=True)
        sys.exit(1)
    reactor.addSystemEventTrigger("before", "shutdown", engine.stopService)
    reactor.callWhenRunning(install_signal_handlers, reactor, stop, engine.reload)
    # Everything loaded so far lives as long as the process: keep it out of the collector's
    # full passes, which otherwise walk ~100k start-up objects (35-50 ms pauses, bench/).
    gc.collect()
    gc.freeze()
    # The young generation filled every ~30 messages (700 objects, the default) and its
    # passes freed next to nothing: a message's objects die by reference count, not in
    # cycles (gc callbacks, 60,000 messages at 8x8: 10 objects collected). 10,000 leaves
    # room for everything in flight, so the collector runs only when something builds up
    # (about 3 µs of CPU per message less at 32x4, bench/).
    gc.set_threshold(GC_YOUNG_THRESHOLD)
    log.info(
        "started",
        version=__version__,
        listeners=len(config.listeners),
        seconds=round(time.perf_counter() - started, 3),
    )
    reactor.run()
    log.info("stopped")


@click.command()
@config_option
def reload(config_path: str) -> None:
    """Make the running engine re-read CONFIG (like SIGHUP), through its admin API (POST
    /api/reload, audited).

    Exits 1 when the engine refuses the new config (its errors are printed) or cannot be
    reached.
    """
    load(config_path)  # check it here first: the same errors, without a round trip
    _, body = admin_api(config_path).call("POST", "/api/reload", ok=(200, 409))
    for line in body.get("messages", []):
        click.echo(line)
    if not body.get("ok"):
        sys.exit(1)


COMMANDS = [run, reload]
