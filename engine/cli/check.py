"""Offline commands on configs and channels: check, test, convert, schema, docs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from engine.cli.common import config_option, load


@click.command()
@config_option
def check(config_path: str) -> None:
    """Validate CONFIG and its channels: print every error (exit 1) or a summary (exit 0).

    One pass finds them all: structure, names, ports, and what only building finds
    (functions that do not import, missing tables, stylesheets, encryption keys)."""
    from engine.components import load_config
    from engine.config import ConfigError, summary

    try:
        config = load_config(config_path)  # builds the channels and loads the keys too
    except ConfigError as exc:
        click.echo(exc.format(None), err=True)
        sys.exit(1)
    click.echo(summary(config))


@click.command("test")
@click.argument("paths", nargs=-1, type=click.Path())
def test_channels(paths: tuple[str, ...]) -> None:
    """Run channel tests: PATH... are *_test.yaml files or directories (default: channels/).

    Prints each failure with its file:line:column, expected and actual; exits 1 on any.
    """
    from engine.testing import format_report, run_tests

    report = run_tests(list(paths))
    click.echo(format_report(report))
    if not report.ok:
        sys.exit(1)


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--channel", help="Run this channel's steps and use its FHIR destination.")
@click.option("--destination", help="Which FHIR destination of the channel (default: first).")
@config_option
@click.option(
    "--validate/--no-validate",
    default=True,
    show_default=True,
    help="Check the bundle against the FHIR R4 models.",
)
@click.option(
    "--timezone",
    default="UTC",
    show_default=True,
    help="Zone for times without an offset (without --channel).",
)
def convert(file, channel, destination, config_path, validate, timezone) -> None:
    """Print the FHIR R4 transaction Bundle an analyst would get for the message(s) in FILE."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from engine.fhir.convert import UnsupportedMessage
    from engine.fhir.convert import convert as to_fhir
    from engine.fhir.convert import validate as check
    from engine.fhir.options import ConvertOptions
    from engine.hl7.message import Message, MessageError
    from engine.mllp.client import split_messages

    try:
        payloads = split_messages(Path(file).read_bytes())
    except OSError as exc:
        raise click.ClickException(f"cannot read {file}: {exc.strerror}") from None
    if not payloads:
        raise click.ClickException(f"{file}: no HL7 message (no segment starting with MSH)")
    target = pipeline = options = None
    if channel:
        _, pipeline = load(config_path)
        if channel not in pipeline.channels:
            raise click.ClickException(
                f"no channel '{channel}' (channels: {', '.join(sorted(pipeline.channels))})"
            )
        fhir = [
            t.destination
            for t in pipeline.channels[channel].targets
            if t.destination.kind == "fhir" and destination in (None, t.destination.name)
        ]
        if not fhir:
            named = f" named '{destination}'" if destination else ""
            raise click.ClickException(f"channel '{channel}' has no FHIR destination{named}")
        target = fhir[0]
    else:
        try:
            options = ConvertOptions(timezone=ZoneInfo(timezone))
        except (ZoneInfoNotFoundError, ValueError):
            raise click.BadParameter(f"unknown time zone {timezone!r}") from None
    failed = False
    for payload in payloads:
        try:
            message = Message.from_bytes(payload)
            if target is None:
                bundle = to_fhir(message, options)
            else:
                result = pipeline.channels[channel].run(message)
                out = next((o for o in result.outputs if o.destination == target.name), None)
                if out is None:
                    why = result.reason or f"{result.status} at step {result.step}"
                    raise ValueError(f"channel '{channel}' produced no bundle: {why}")
                bundle = json.loads(out.payload)
            if validate:
                check(bundle)
        except (UnsupportedMessage, MessageError, ValueError) as exc:
            click.echo(f"{file}: {exc}", err=True)
            failed = True
            continue
        click.echo(json.dumps(bundle, indent=2, ensure_ascii=False))
    if failed:
        sys.exit(1)


@click.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Write the routes, channel and channel-test schemas here (default: print).",
)
def schema(out_dir: str | None) -> None:
    """JSON Schema of routes.yaml and channel files, for editor completion and checks."""
    from engine.components import schema as of
    from engine.testing_spec import channel_test_schema

    schemas = {
        "routes": of("routes"),
        "channel": of("channel"),
        "channel-test": channel_test_schema(),
    }
    if out_dir is None:
        click.echo(json.dumps(schemas, indent=2))
        return
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for kind, body in schemas.items():
        path = Path(out_dir) / f"{kind}.schema.json"
        path.write_text(json.dumps(body, indent=2) + "\n")
        click.echo(f"wrote {path}")


@click.command()
def docs() -> None:
    """Print every component's settings: listeners, routes, steps and destinations, with
    examples."""
    from engine.components import REGISTRY
    from engine.components import docs as reference

    click.echo(reference())
    click.echo("\nStep examples")
    click.echo("=============")
    for kind, component in sorted(REGISTRY.components("step").items()):
        if component.example:
            click.echo(f"\n{kind}:")
            for line in component.example.splitlines():
                click.echo(f"  - {line}")


COMMANDS = [check, test_channels, convert, schema, docs]
