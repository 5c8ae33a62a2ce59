"""SIGKILL under load: every ACKed message is delivered at least once, in order, after a
restart (a real engine subprocess, a real MLLP peer, a real store)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import pytest_twisted

from engine.mllp.client import BlockingMLLPClient, MLLPClientError

from .conftest import STORE_KINDS
from .peers import MLLPPeer, wait_for

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(cfg: Path, admin: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "engine", "run", "-c", str(cfg)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/healthz", timeout=1):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read().decode()) from None
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("engine did not start")


def msg(n: int) -> bytes:
    return f"MSH|^~\\&|REG|H|X|H|2024||ADT^A08|K{n}|P|2.5\rPID|1||{n}^^^H^MR\r".encode()


def load(port: int, numbers, kill_after: int | None = None, pid: int | None = None):
    """Send in order on one connection; returns the numbers ACKed (AA) before it broke."""
    acked = []
    try:
        with BlockingMLLPClient("127.0.0.1", port, timeout=5) as c:
            for n in numbers:
                if b"MSA|AA|" in c.send(msg(n)):
                    acked.append(n)
                if kill_after is not None and len(acked) == kill_after:
                    os.kill(pid, signal.SIGKILL)  # mid-stream, with messages in flight
    except (OSError, MLLPClientError):
        pass
    return acked


def write_node(tmp_path, name: str, store_url: str, peer_port: int):
    """An engine's config under tmp_path/name: MLLP in, ADT to a channel delivering to the
    peer with quick retries, short lease and poll times. Returns (routes.yaml, listen, admin)."""
    d = tmp_path / name
    (d / "channels").mkdir(parents=True)
    (d / "channels" / "adt.yaml").write_text(
        f"name: adt\ndestinations:\n  - name: ehr\n    mllp: 'tcp:127.0.0.1:{peer_port}'\n"
        "    retry: {max_attempts: 100, backoff: 50ms, max_backoff: 200ms}\n"
    )
    listen, admin = free_port(), free_port()
    (d / "routes.yaml").write_text(
        f"store: {store_url}\n"
        f"listeners:\n  - {{name: in, mllp: 'tcp:{listen}:interface=127.0.0.1'}}\n"
        f"admin: {{listen: 'tcp:{admin}:interface=127.0.0.1'}}\n"
        "logging: {level: warning, format: json}\n"
        "store_options: {poll_interval: 50ms, lease_ttl: 2s}\n"
        "routes:\n  - {match: {type: ADT}, to: [adt]}\n"
    )
    return d / "routes.yaml", listen, admin


@pytest.mark.parametrize("store_url", STORE_KINDS, indirect=True)
@pytest_twisted.ensureDeferred
async def test_sigkill_under_load_loses_nothing_acked(tmp_path, store_url):
    from twisted.internet.threads import deferToThread

    peer = await MLLPPeer().start()
    cfg, listen, admin = write_node(tmp_path, "node", store_url, peer.port)
    proc = await deferToThread(spawn, cfg, admin)
    try:
        first = await deferToThread(load, listen, range(0, 400), 150, proc.pid)
        assert proc.wait(10) == -signal.SIGKILL
        assert len(first) >= 150
        proc = await deferToThread(spawn, cfg, admin)
        second = await deferToThread(load, listen, range(1000, 1100))
        acked = [f"K{n}" for n in first + second]
        assert await wait_for(lambda: set(acked) <= set(peer.received), timeout=30)
        # in order: the first arrival of each message follows the order they were ACKed
        firsts = list(dict.fromkeys(peer.received))
        positions = [firsts.index(cid) for cid in acked]
        assert positions == sorted(positions)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
        await peer.stop()
