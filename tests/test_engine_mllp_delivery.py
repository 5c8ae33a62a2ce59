"""MLLP in, a channel, MLLP out to a real peer: order, a peer that is down then up, AR."""

from __future__ import annotations

import pytest_twisted
from sqlalchemy import select

from engine.store.schema import deliveries

from .engine_harness import in_thread, send_all, start_engine, statuses
from .peers import MLLPPeer, wait_for

CONFIG = """
listeners:
  - {name: in, mllp: "tcp:0:interface=127.0.0.1"}
routes:
  - {match: {type: ADT}, to: [adt]}
store_options: {poll_interval: 50ms}
"""


def channel(port: int) -> str:
    return (
        "name: adt\nsteps:\n  - set: {MSH-5: EHR}\ndestinations:\n"
        f"  - name: ehr\n    mllp: 'tcp:127.0.0.1:{port}'\n    ack_timeout: 2s\n"
        "    retry: {max_attempts: 50, backoff: 50ms, max_backoff: 200ms}\n"
    )


def adt(n: int, trigger: str = "A01") -> bytes:
    return f"MSH|^~\\&|REG|H|X|H|2024||ADT^{trigger}|D{n}|P|2.5\rPID|1||{n}^^^H^MR\r".encode()


def start(tmp_path, peer_port: int):
    (tmp_path / "channels").mkdir(exist_ok=True)
    (tmp_path / "channels" / "adt.yaml").write_text(channel(peer_port))
    return start_engine(tmp_path, CONFIG, channels=())


@pytest_twisted.ensureDeferred
async def test_delivered_in_order_with_the_channel_applied(tmp_path):
    peer = await MLLPPeer().start()
    sb = start(tmp_path, peer.port)
    try:
        msgs = [adt(i, "A01" if i % 2 else "A08") for i in range(20)]
        await in_thread(send_all, sb.port_of("in"), msgs)
        assert await wait_for(lambda: len(peer.received) >= 20)
        assert peer.received == [f"D{i}" for i in range(20)]
        assert await wait_for(lambda: statuses(sb) == ["delivered"] * 20)
    finally:
        await sb.stopService()
        await peer.stop()


@pytest_twisted.ensureDeferred
async def test_peer_down_then_up_drains_in_order(tmp_path):
    peer = await MLLPPeer().start()
    port = peer.port
    await peer.stop()  # the receiving system is down
    sb = start(tmp_path, port)
    try:
        await in_thread(send_all, sb.port_of("in"), [adt(i) for i in range(10)])
        assert await wait_for(lambda: "retry" in statuses(sb))
        assert peer.received == []
        await sb.delivery._refresh_depths()  # the gauges ops watch while a peer is down
        get = sb.metrics.registry.get_sample_value
        labels = {"channel": "adt", "destination": "ehr"}
        queued = sum(get("switchboard_queue_depth", {**labels, "state": s}) or 0
                     for s in ("pending", "in_flight", "retry"))  # fmt: skip
        assert queued == 10
        assert get("switchboard_queue_oldest_age_seconds", labels) >= 0
        assert get("switchboard_destination_health", labels) >= 1  # degraded or down
        peer = MLLPPeer(port)
        await peer.start()  # back up
        assert await wait_for(lambda: statuses(sb) == ["delivered"] * 10)
        assert peer.received == [f"D{i}" for i in range(10)]
    finally:
        await sb.stopService()
        await peer.stop()


@pytest_twisted.ensureDeferred
async def test_ae_retried_ar_dead_lettered_and_queue_moves_on(tmp_path):
    peer = await MLLPPeer().start()
    peer.script = {"D1": ["AE", "AA"], "D2": ["AR"]}
    sb = start(tmp_path, peer.port)
    try:
        await in_thread(send_all, sb.port_of("in"), [adt(i) for i in range(4)])
        assert await wait_for(lambda: statuses(sb).count("delivered") == 3)
        assert statuses(sb) == ["delivered", "delivered", "dead", "delivered"]
        assert peer.received == ["D0", "D1", "D1", "D2", "D3"]
        with sb.store.engine.connect() as conn:
            dead = conn.execute(select(deliveries).where(deliveries.c.status == "dead"))
            row = dead.mappings().one()
        assert row["response_code"] == "AR" and "MSA|AR|D2" in row["response"]
        get = sb.metrics.registry.get_sample_value
        labels = {"channel": "adt", "destination": "ehr"}
        assert get("switchboard_dead_letters_total", labels) == 1
        assert get("switchboard_peer_responses_total", {**labels, "code": "AE"}) == 1
    finally:
        await sb.stopService()
        await peer.stop()
