"""`switchboard send`: messages over MLLP, each ACK code printed."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command()
@click.argument("address", metavar="HOST:PORT")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for each ACK.")
@click.option("--tls", is_flag=True, help="Connect with TLS.")
@click.option("--ca", type=click.Path(exists=True, dir_okay=False), help="CA to verify the server.")
@click.option("--cert", type=click.Path(exists=True, dir_okay=False), help="Client certificate.")
@click.option("--key", type=click.Path(exists=True, dir_okay=False), help="Client private key.")
@click.option("--server-name", help="Name to verify the server certificate against.")
def send(address, files, timeout, tls, ca, cert, key, server_name) -> None:
    """Send the messages in FILE... over MLLP and print each ACK code.

    Exits 1 when any ACK is not AA/CA, or on a timeout or connection error.
    """
    from engine.mllp.client import (
        BlockingMLLPClient,
        MLLPClientError,
        ack_code,
        split_messages,
        tls_context,
    )

    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise click.BadParameter("expected HOST:PORT, e.g. 127.0.0.1:2575", param_hint="HOST:PORT")
    host = host.strip("[]")
    batches = []
    for name in files:
        try:
            data = Path(name).read_bytes()
        except OSError as exc:
            raise click.ClickException(f"cannot read {name}: {exc.strerror}") from None
        msgs = split_messages(data)
        if not msgs:
            raise click.ClickException(f"{name}: no HL7 message (no segment starting with MSH)")
        batches.append((name, msgs))
    ctx = tls_context(ca, cert, key) if (tls or ca or cert) else None
    failed = 0
    try:
        client = BlockingMLLPClient(
            host, int(port), timeout=timeout, tls=ctx, server_hostname=server_name
        )
    except (OSError, MLLPClientError) as exc:
        raise click.ClickException(f"cannot connect to {address}: {exc}") from None
    with client:
        for name, msgs in batches:
            for i, msg in enumerate(msgs, 1):
                control_id = _control_id(msg)
                label = f"{name}#{i}" if len(msgs) > 1 else name
                try:
                    ack = client.send(msg)
                except (OSError, MLLPClientError) as exc:
                    click.echo(f"{label} {control_id}: FAILED {exc}")
                    sys.exit(1)
                code = ack_code(ack) or "??"
                click.echo(f"{label} {control_id}: {code}")
                if code not in ("AA", "CA"):
                    failed += 1
    if failed:
        sys.exit(1)


def _control_id(msg: bytes) -> str:
    first = msg.split(b"\r", 1)[0].decode("latin-1")
    parts = first.split(first[3]) if len(first) > 3 else []
    return parts[9] if len(parts) > 9 else ""


COMMANDS = [send]
