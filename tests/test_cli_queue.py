"""Queue actions and replays from the command line: through the running engine's audited admin
API (TCP, a Unix socket, mutual TLS), or, with the engine stopped, on the store directly.

The engine runs in-process on 127.0.0.1 (its workers look at the store only every 10 minutes,
so only a wake-up makes them act at once); the CLI runs as a subprocess in a thread.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_twisted
from sqlalchemy import insert
from twisted.internet.defer import Deferred, succeed

from engine.admin.audit import recent
from engine.certs import init_certs
from engine.delivery.queue import QueueStore
from engine.store import migrations
from engine.store.db import create_store_engine
from engine.store.schema import messages

from .engine_harness import in_thread, send_all, start_engine, statuses, write_config
from .peers import wait_for

REPO = Path(__file__).resolve().parents[1]
TOKEN = "s3cret"
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def routes(admin: str) -> str:
    return f"""
listeners:
  - {{name: in, mllp: "tcp:0:interface=127.0.0.1"}}
routes:
  - {{match: {{type: ADT}}, to: [adt]}}
store_options: {{poll_interval: 10m, lease_ttl: 1h}}
{admin}
"""


def adt(n: int) -> bytes:
    return f"MSH|^~\\&|REG|H|X|H|2024||ADT^A01|Q{n}|P|2.5\rPID|1||P{n}^^^H^MR\r".encode()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    init_certs(d)
    return d


class Running:
    """An engine started in-process from routes.yaml, and the CLI run against that file."""

    def __init__(self, tmp_path: Path, store_url: str, admin: str):
        self.tmp_path = tmp_path
        self.store_url = store_url
        (tmp_path / "channels").mkdir()
        (tmp_path / "channels" / "adt.yaml").write_text(
            f"name: adt\ndestinations:\n  - {{name: out, file: {tmp_path / 'out'}}}\n"
        )
        self.sb = start_engine(tmp_path, routes(admin), channels=(), store=store_url)
        self.config = tmp_path / "routes.yaml"
        self.running = True

    def cli(self, *args: str, env: dict | None = None):
        """`switchboard ARGS -c routes.yaml` in a subprocess, off the reactor thread."""
        return in_thread(subprocess.run, [sys.executable, "-m", "engine", *args, "-c",
                                          str(self.config)],
                         cwd=REPO, env=env or dict(os.environ), capture_output=True, text=True,
                         timeout=60)  # fmt: skip

    def stop(self) -> Deferred:
        if not self.running:
            return succeed(None)
        self.running = False
        return self.sb.stopService()

    def audit(self) -> list[tuple]:
        """(action, target, actor, detail, source) of each audit entry, oldest first."""
        store = create_store_engine(self.store_url)
        try:
            return [(e["action"], e["target"], e["actor"], e["detail"], e["source"])
                    for e in reversed(recent(store))]  # fmt: skip
        finally:
            store.dispose()

    def paused(self) -> bool:
        store = create_store_engine(self.store_url)
        try:
            rows = QueueStore(store, "test").depths(0.0)
            return any(r["paused"] for r in rows if r["destination"] == "out")
        finally:
            store.dispose()


@pytest.fixture
def start(tmp_path, store_url, monkeypatch):
    monkeypatch.setenv("SB_TEST_TOKEN", TOKEN)
    started = []

    def run(admin: str) -> Running:
        started.append(Running(tmp_path, store_url, admin))
        return started[-1]

    yield run
    for engine in started:
        pytest_twisted.blockon(engine.stop())


def tcp_admin() -> str:
    listen = f"tcp:{free_port()}:interface=127.0.0.1"
    return f'admin: {{listen: "{listen}", token: "${{SB_TEST_TOKEN}}"}}'


@pytest_twisted.ensureDeferred
async def test_queue_actions_go_through_the_running_engine(start):
    running = start(tcp_admin())
    sb = running.sb
    worker = sb.delivery.workers[("adt", "out")]
    assert await wait_for(lambda: worker.holder)

    out = await running.cli("queue", "pause", "adt/out")
    assert (out.returncode, out.stdout, out.stderr) == (0, "paused adt/out\n", "")
    assert await wait_for(lambda: worker.paused, timeout=5)  # woken: not in 10 minutes
    assert b"MSA|AA|Q1" in (await in_thread(send_all, sb.port_of("in"), [adt(1)]))[0]
    assert statuses(sb) == ["pending"]
    out = await running.cli("queue", "resume", "adt/out")
    assert (out.returncode, out.stdout, out.stderr) == (0, "resumed adt/out\n", "")
    assert await wait_for(lambda: statuses(sb) == ["delivered"], timeout=5)

    out = await running.cli("queue", "skip", "adt/out")
    assert out.returncode == 1 and "adt/out: the queue is empty" in out.stderr
    out = await running.cli("queue", "replay", "--all", "--status", "any")
    assert (out.returncode, out.stdout, out.stderr) == (0, "replayed 0 deliveries\n", "")
    out = await running.cli("queue", "pause", "adt/nope")
    assert out.returncode == 1 and "no destination 'nope' in channel 'adt'" in out.stderr
    mid = json.loads((await running.cli("messages", "--json")).stdout)["id"]
    out = await running.cli("replay", str(mid))
    assert out.returncode == 0 and out.stdout == "replayed 0 deliveries of 1 messages\n"
    assert "store" not in out.stderr

    entries = running.audit()
    assert [e[:4] for e in entries] == [
        ("pause", "adt/out", "token", {"paused": True}),
        ("resume", "adt/out", "token", {"paused": False}),
        ("replay", "all", "token", {"status": "any", "replayed": 0}),
        ("replay", f"message {mid}", "token", {"deliveries": [], "replayed": 0}),
    ]
    assert all(e[4].startswith("127.0.0.1:") for e in entries)  # the API saw the CLI connect


@pytest_twisted.ensureDeferred
async def test_a_running_engine_that_refuses_the_token_is_an_error(start):
    running = start(tcp_admin())
    worker = running.sb.delivery.workers[("adt", "out")]
    wrong = {**os.environ, "SB_TEST_TOKEN": "wrong"}
    for args in (("queue", "pause", "adt/out"), ("queue", "resume", "adt/out"),
                 ("queue", "skip", "adt/out"), ("queue", "replay", "--all"), ("replay", "1"),
                 ("status",), ("reload",)):  # fmt: skip
        out = await running.cli(*args, env=wrong)
        assert out.returncode == 1, (args, out.stdout, out.stderr)
        assert "refused the admin token (HTTP 401)" in out.stderr, args
        assert "set admin.token in" in out.stderr and "SWITCHBOARD_ADMIN_TOKEN" in out.stderr
        assert "store directly" not in out.stderr and "Traceback" not in out.stderr
    assert running.audit() == [] and not running.paused() and not worker.paused


@pytest_twisted.ensureDeferred
async def test_with_the_engine_stopped_actions_change_the_store_and_say_so(start):
    running = start(tcp_admin())
    sb = running.sb
    assert b"MSA|AA|" in (await in_thread(send_all, sb.port_of("in"), [adt(1)]))[0]
    assert await wait_for(lambda: statuses(sb) == ["delivered"], timeout=5)
    mid = json.loads((await running.cli("messages", "--json")).stdout)["id"]
    await running.stop()
    store = create_store_engine(running.store_url)
    with store.begin() as conn:  # one that went nowhere: only the engine takes it in again
        errored = conn.execute(insert(messages).values(
            received_at=1.0, listener="in", status="errored", size=1, raw=b"MSH|"
        )).inserted_primary_key[0]  # fmt: skip
    store.dispose()
    note = "(engine not running: changed the store directly)\n"

    out = await running.cli("queue", "pause", "adt/out")
    assert (out.returncode, out.stdout, out.stderr) == (0, "paused adt/out\n", note)
    assert running.paused()
    out = await running.cli("queue", "resume", "adt/out")
    assert (out.returncode, out.stdout, out.stderr) == (0, "resumed adt/out\n", note)
    assert not running.paused()
    out = await running.cli("queue", "skip", "adt/out")
    assert out.returncode == 1 and "adt/out: the queue is empty" in out.stderr
    out = await running.cli("queue", "replay", "adt/out", "--status", "any")
    assert (out.returncode, out.stdout, out.stderr) == (0, "replayed 0 deliveries\n", note)
    out = await running.cli("replay", str(mid))
    assert out.returncode == 0 and out.stdout == "replayed 0 deliveries of 1 messages\n"
    assert out.stderr.endswith(note)
    out = await running.cli("replay", str(errored), "999")
    assert out.returncode == 1 and out.stdout == ""
    assert f"message {errored}: it went nowhere (errored); taking it in again needs the " \
           "engine: start it (switchboard run)" in out.stderr  # fmt: skip
    assert "message 999: no message 999" in out.stderr
    body = running.tmp_path / "edited.hl7"
    body.write_bytes(adt(2))
    out = await running.cli("replay", str(mid), "--body-file", str(body))
    assert out.returncode == 1 and "start the engine (switchboard run)" in out.stderr

    # the same entries as the API writes, by the user at the command line
    user = f"cli:{getpass.getuser()}"
    assert running.audit() == [
        ("pause", "adt/out", user, {"paused": True}, "cli"),
        ("resume", "adt/out", user, {"paused": False}, "cli"),
        ("replay", "adt/out", user, {"status": "any", "replayed": 0}, "cli"),
        ("replay", f"message {mid}", user, {"deliveries": [], "replayed": 0}, "cli"),
    ]


def test_without_an_admin_listener_the_store_is_changed_and_that_is_said(tmp_path):
    cfg = write_config(tmp_path, routes(""))
    store = create_store_engine(f"sqlite:///{tmp_path / 'store.db'}")
    migrations.upgrade(store)
    store.dispose()
    out = subprocess.run([sys.executable, "-m", "engine", "queue", "pause", "adt/out", "-c",
                          str(cfg)], cwd=REPO, capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert out.returncode == 0 and out.stdout == "paused adt/out\n"
    assert out.stderr.startswith("(no admin listener in the config: changed the store directly")


@pytest_twisted.ensureDeferred
async def test_through_an_admin_listener_on_a_unix_socket(start, tmp_path):
    sock = tmp_path / "admin.sock"
    running = start(f'admin: {{listen: "unix:{sock}", token: "${{SB_TEST_TOKEN}}"}}')
    worker = running.sb.delivery.workers[("adt", "out")]
    assert await wait_for(lambda: worker.holder)
    out = await running.cli("queue", "pause", "adt/out")
    assert (out.returncode, out.stdout, out.stderr) == (0, "paused adt/out\n", "")
    assert await wait_for(lambda: worker.paused, timeout=5)
    assert [e[:3] for e in running.audit()] == [("pause", "adt/out", "token")]
    await running.stop()
    out = await running.cli("queue", "resume", "adt/out")
    assert out.returncode == 0 and "engine not running" in out.stderr


@pytest_twisted.ensureDeferred
async def test_through_an_admin_listener_that_requires_a_client_certificate(start, certs):
    running = start(f"""admin:
  listen: "tcp:{free_port()}:interface=127.0.0.1"
  tls: {{cert: {certs / "server.pem"}, key: {certs / "server.key"},
         client_ca: {certs / "ca.pem"}, require_client_cert: require}}
""")  # fmt: skip
    worker = running.sb.delivery.workers[("adt", "out")]
    # no client certificate: the engine cannot be asked, so nothing is done (not the store)
    out = await running.cli("queue", "pause", "adt/out")
    assert out.returncode == 1 and "cannot tell whether the engine runs" in out.stderr
    assert "SWITCHBOARD_ADMIN_CLIENT_CERT" in out.stderr and not running.paused()
    env = {**os.environ, "SWITCHBOARD_ADMIN_CLIENT_CERT": str(certs / "client.pem"),
           "SWITCHBOARD_ADMIN_CLIENT_KEY": str(certs / "client.key")}  # fmt: skip
    out = await running.cli("queue", "pause", "adt/out", env=env)
    assert (out.returncode, out.stdout, out.stderr) == (0, "paused adt/out\n", "")
    assert await wait_for(lambda: worker.paused, timeout=5)
    out = await running.cli("status", env=env)
    assert out.returncode == 0 and "adt/out" in out.stdout and "yes" in out.stdout
    assert [e[:3] for e in running.audit()] == [("pause", "adt/out", "cert:switchboard-dev-client")]
