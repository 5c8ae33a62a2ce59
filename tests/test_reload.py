"""Reload: a changed channel applies to the next message on a connection that stays open;
a bad config is refused and the running one kept; changed listeners restart."""

from __future__ import annotations

import socket

import pytest
import pytest_twisted
from sqlalchemy import select

from engine.mllp.client import BlockingMLLPClient, MLLPClientError
from engine.store.schema import deliveries

from .engine_harness import in_thread, start_engine

CHANNEL = (
    "name: adt\nsteps:\n  - set: {{MSH-5: {value}}}\ndestinations:\n  - {{name: out, file: out}}\n"
)


def config(extra_listener: str = "") -> str:
    return (
        "listeners:\n"
        '  - {name: keep, mllp: "tcp:0:interface=127.0.0.1"}\n'
        + extra_listener
        + "routes:\n  - {match: {type: ADT}, to: [adt]}\n"
    )


def adt(n: int) -> bytes:
    return f"MSH|^~\\&|A|B|C|D|2024||ADT^A01|M{n}|P|2.5\rPID|1\r".encode()


@pytest.fixture
def setup(tmp_path):
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "adt.yaml").write_text(CHANNEL.format(value="FIRST"))
    sb = start_engine(tmp_path, config(), channels=())
    yield sb, tmp_path
    pytest_twisted.blockon(sb.stopService())


def outputs(sb) -> list[bytes]:
    with sb.store.engine.connect() as conn:
        rows = conn.execute(select(deliveries.c.payload).order_by(deliveries.c.id))
        return [r[0].split(b"|")[4] for r in rows]


@pytest_twisted.inlineCallbacks
def test_reload_keeps_connection_and_applies_channel_change(setup):
    sb, tmp_path = setup
    port = sb.port_of("keep")
    client = yield in_thread(BlockingMLLPClient, "127.0.0.1", port, timeout=10)
    try:
        yield in_thread(client.send, adt(1))
        (tmp_path / "channels" / "adt.yaml").write_text(CHANNEL.format(value="SECOND"))
        ok, lines = yield sb.reload()
        assert ok, lines
        reply = yield in_thread(client.send, adt(2))  # same connection, still open
        assert b"MSA|AA|M2" in reply
    finally:
        client.close()
    assert outputs(sb) == [b"FIRST", b"SECOND"]
    assert sb.port_of("keep") == port


@pytest_twisted.inlineCallbacks
def test_bad_config_refused_running_one_kept(setup):
    sb, tmp_path = setup
    (tmp_path / "channels" / "adt.yaml").write_text("name: adt\nsteps:\n  - sett: {MSH-5: X}\n")
    ok, lines = yield sb.reload()
    assert not ok
    assert len(lines) == 1
    assert lines[0].endswith(
        "adt.yaml:3:5: unknown step kind 'sett' in step 1; did you mean 'set'?"
    )
    reply = yield in_thread(
        lambda: BlockingMLLPClient("127.0.0.1", sb.port_of("keep")).send(adt(3))
    )
    assert b"MSA|AA|M3" in reply
    assert outputs(sb) == [b"FIRST"]


@pytest_twisted.inlineCallbacks
def test_added_and_changed_listeners(setup):
    sb, tmp_path = setup
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    new_port = free.getsockname()[1]
    free.close()
    (tmp_path / "routes.yaml").write_text(
        (tmp_path / "routes.yaml").read_text().split("listeners:")[0]
        + config(f'  - {{name: added, mllp: "tcp:{new_port}:interface=127.0.0.1"}}\n')
    )
    ok, lines = yield sb.reload()
    assert ok, lines
    reply = yield in_thread(lambda: BlockingMLLPClient("127.0.0.1", new_port).send(adt(4)))
    assert b"MSA|AA|M4" in reply
    # change the new listener's ack mode: it restarts on the same port
    text = (tmp_path / "routes.yaml").read_text()
    (tmp_path / "routes.yaml").write_text(
        text.replace(
            f'"tcp:{new_port}:interface=127.0.0.1"}}',
            f'"tcp:{new_port}:interface=127.0.0.1", ack: after_routing}}',
        )
    )
    ok, lines = yield sb.reload()
    assert ok, lines
    assert sb.listeners["added"].server_factory.listener.ack == "after_routing"
    reply = yield in_thread(lambda: BlockingMLLPClient("127.0.0.1", new_port).send(adt(5)))
    assert b"MSA|AA|M5" in reply


@pytest_twisted.inlineCallbacks
def test_changed_limits_apply_to_open_connections_without_a_restart(setup):
    sb, tmp_path = setup
    port = sb.port_of("keep")
    svc = sb.listeners["keep"]
    client = yield in_thread(BlockingMLLPClient, "127.0.0.1", port, timeout=10)
    try:
        yield in_thread(client.send, adt(1))
        routes = tmp_path / "routes.yaml"
        routes.write_text(routes.read_text().replace(
            'mllp: "tcp:0:interface=127.0.0.1"}',
            'mllp: "tcp:0:interface=127.0.0.1", max_frame_size: 2KiB, frame_timeout: 5s,'
            " idle_timeout: 1h, max_connections: 3, require_end_of_data: false}",
        ))  # fmt: skip
        ok, lines = yield sb.reload()
        assert ok, lines
        assert sb.listeners["keep"] is svc and sb.port_of("keep") == port  # not restarted
        (proto,) = svc.server_factory.open
        assert (proto.max_frame_size, proto.frame_timeout, proto.idle_timeout) == (2048, 5, 3600)
        assert not proto.require_end_of_data and svc.server_factory.max_connections == 3
        reply = yield in_thread(client.send, adt(2))  # the same connection, still open
        assert b"MSA|AA|M2" in reply
        # the new frame limit holds on this connection: a 4 KiB frame closes it
        big = adt(3) + b"NTE|1||" + b"x" * 4096 + b"\r"
        with pytest.raises((MLLPClientError, OSError)):
            yield in_thread(client.send, big)
    finally:
        client.close()
    assert outputs(sb) == [b"FIRST", b"FIRST"]
