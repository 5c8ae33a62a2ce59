"""Two engine processes share one PostgreSQL store: one node delivers a destination at a
time, in order; when it dies (SIGKILL) the other takes the destination over."""

from __future__ import annotations

import signal

import pytest
import pytest_twisted
from sqlalchemy import create_engine, select

from engine.store.schema import deliveries, destination_state, messages

from .conftest import PG_URL
from .peers import MLLPPeer, wait_for
from .test_crash_recovery import load, spawn, write_node

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.skipif(not PG_URL, reason="SWITCHBOARD_TEST_PG_URL is not set (no PostgreSQL)"),
]


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
@pytest_twisted.ensureDeferred
async def test_two_nodes_one_destination_in_order_and_failover(tmp_path, store_url):
    from twisted.internet.threads import deferToThread

    peer = await MLLPPeer().start()
    cfg_a, listen_a, admin_a = write_node(tmp_path, "a", store_url, peer.port)
    cfg_b, listen_b, admin_b = write_node(tmp_path, "b", store_url, peer.port)
    a = await deferToThread(spawn, cfg_a, admin_a)
    b = await deferToThread(spawn, cfg_b, admin_b)
    db = create_engine(store_url)
    procs = {a.pid: a, b.pid: b}
    try:
        # messages arrive at both nodes; one destination queue, in commit (id) order
        await deferToThread(load, listen_a, range(0, 50))
        await deferToThread(load, listen_b, range(50, 100))
        await deferToThread(load, listen_a, range(100, 150))

        def order():
            with db.connect() as conn:
                return list(conn.execute(
                    select(messages.c.control_id)
                    .join(deliveries, deliveries.c.message_id == messages.c.id)
                    .order_by(deliveries.c.id)).scalars())  # fmt: skip

        assert await wait_for(lambda: len(set(peer.received)) >= 150, timeout=30)
        assert list(dict.fromkeys(peer.received)) == order()
        with db.connect() as conn:
            holder = conn.execute(select(destination_state.c.lease_holder)).scalar()
        holder_pid = int(holder.split("-")[-2])
        assert holder_pid in procs
        # the holder dies; the other node takes the destination over after the lease expires
        dead = procs.pop(holder_pid)
        dead.send_signal(signal.SIGKILL)
        dead.wait(10)
        survivor = next(iter(procs.values()))
        listen = listen_a if survivor is a else listen_b
        await deferToThread(load, listen, range(200, 230))
        assert await wait_for(lambda: len(set(peer.received)) >= 180, timeout=30)
        assert list(dict.fromkeys(peer.received)) == order()
        with db.connect() as conn:
            holder = conn.execute(select(destination_state.c.lease_holder)).scalar()
        assert int(holder.split("-")[-2]) == survivor.pid
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(20)
        db.dispose()
        await peer.stop()
