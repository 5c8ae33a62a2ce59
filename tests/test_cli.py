"""The switchboard command as a user runs it: real subprocesses, real sockets on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .engine_harness import write_config

REPO = Path(__file__).resolve().parents[1]
SWITCHBOARD = [sys.executable, "-m", "engine"]
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sb(*args, cwd=None, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SWITCHBOARD, *args], cwd=cwd or REPO, capture_output=True, text=True, timeout=timeout
    )


# How a script starts the engine in the background: SIGINT (and, under nohup, SIGHUP) come
# ignored, and a Python program keeps an inherited ignore unless it installs its own handler.
IGNORING = ["sh", "-c", 'trap "" INT HUP TERM; exec "$0" "$@"']


@pytest.fixture
def running(tmp_path, request):
    """`switchboard run` in a subprocess on free ports; yields (config, mllp port, process).
    Parametrized with "ignoring", it starts with SIGINT, SIGHUP and SIGTERM ignored."""
    prefix = IGNORING if getattr(request, "param", None) == "ignoring" else []
    mllp, admin = free_port(), free_port()
    cfg = write_config(
        tmp_path,
        f"""
listeners:
  - name: mllp-in
    mllp: "tcp:{mllp}:interface=127.0.0.1"
admin: {{listen: "tcp:{admin}:interface=127.0.0.1"}}
logging: {{level: info, format: json}}
routes:
  - {{match: {{type: ADT}}, to: [adt]}}
""",
    )
    proc = subprocess.Popen(
        [*prefix, *SWITCHBOARD, "run", "-c", str(cfg)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/healthz", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"engine exited: {proc.stderr.read()}")
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("engine did not become healthy in 20 s")
    yield cfg, mllp, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def write_msg(tmp_path: Path, name: str, control_id: str, version: str = "2.5") -> Path:
    p = tmp_path / name
    p.write_bytes(
        f"MSH|^~\\&|SND|SF|RCV|RF|2024||ADT^A01|{control_id}|P|{version}\r"
        "PID|1||123^^^H^MR||DOE^JANE\r".encode()
    )
    return p


def test_send_messages_and_sigterm(running, tmp_path):
    cfg, port, proc = running
    a = write_msg(tmp_path, "a.hl7", "CLI1")
    b = write_msg(tmp_path, "b.hl7", "CLI2")
    out = sb("send", f"127.0.0.1:{port}", str(a), str(b))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"{a} CLI1: AA", f"{b} CLI2: AA"]

    bad = write_msg(tmp_path, "bad.hl7", "CLI3", version="9.9")
    out = sb("send", f"127.0.0.1:{port}", str(bad))
    assert out.returncode == 1 and out.stdout.strip() == f"{bad} CLI3: AR"

    listed = sb("messages", "-c", str(cfg), "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["control_id"], r["status"], r["ack_code"]) for r in rows] == [
        ("CLI3", "rejected", "AR"), ("CLI2", "routed", "AA"), ("CLI1", "routed", "AA")
    ]  # fmt: skip
    assert "raw" not in rows[0]
    only = sb("messages", "-c", str(cfg), "--json", "--control-id", "CLI2")
    assert [json.loads(x)["control_id"] for x in only.stdout.splitlines()] == ["CLI2"]
    table = sb("messages", "-c", str(cfg), "--status", "rejected")
    assert "CLI3" in table.stdout and "CLI1" not in table.stdout
    shown = sb("messages", "-c", str(cfg), "show", str(rows[2]["id"]))
    assert "-- ACK sent --" in shown.stdout and "MSA|AA|CLI1" in shown.stdout

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    logs = proc.stderr.read()
    events = [json.loads(line)["event"] for line in logs.splitlines() if line.startswith("{")]
    assert "started" in events and "stopped" in events
    assert "DOE" not in logs and "JANE" not in logs  # no PHI in logs


@pytest.mark.parametrize("running", ["default", "ignoring"], indirect=True)
def test_sigint_stops_cleanly(running):
    _, _, proc = running
    proc.send_signal(signal.SIGINT)
    assert proc.wait(20) == 0
    logs = proc.stderr.read()
    assert "Traceback" not in logs
    events = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert {
        e["event"]: e.get("signal") for e in events if e["event"] in ("stopping", "stopped")
    } == {"stopping": "SIGINT", "stopped": None}


def test_send_timeout_and_refused(tmp_path):
    msg = write_msg(tmp_path, "a.hl7", "X1")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    port = silent.getsockname()[1]
    out = sb("send", "--timeout", "0.5", f"127.0.0.1:{port}", str(msg))
    silent.close()
    assert out.returncode == 1 and "FAILED no ACK within 0.5 s" in out.stdout
    out = sb("send", f"127.0.0.1:{free_port()}", str(msg))
    assert out.returncode == 1 and "cannot connect to" in out.stderr
    assert "Traceback" not in out.stderr
    out = sb("send", "nowhere", str(msg))
    assert out.returncode == 2 and "expected HOST:PORT" in out.stderr


def test_check_ok_and_errors(tmp_path):
    good = write_config(tmp_path, "listeners:\n  - {name: a, mllp: 'tcp:0:interface=127.0.0.1'}\n")
    out = sb("check", "-c", str(good))
    assert out.returncode == 0, out.stderr
    assert "a" in out.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("listeners:\n  - name: a\n    mlp: 'tcp:2575'\n")
    out = sb("check", "-c", str(bad))
    assert out.returncode == 1
    assert "bad.yaml:3:5: unknown key 'mlp'" in out.stderr
    assert "did you mean 'mllp'?" in out.stderr
    assert "Traceback" not in out.stderr


def test_run_refuses_bad_config_and_busy_port(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("listeners: 3\n")
    out = sb("run", "-c", str(bad))
    assert out.returncode == 1 and "nothing was started." in out.stderr
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    cfg = write_config(tmp_path, f"""
listeners:
  - {{name: a, mllp: 'tcp:{port}:interface=127.0.0.1'}}
routes:
  - {{match: {{type: ADT}}, to: [adt]}}
""")  # fmt: skip
    (tmp_path / "channels" / "adt.yaml").write_text(
        "name: adt\ndestinations:\n  - {name: out, file: out}\n"
    )
    out = sb("run", "-c", str(cfg))
    busy.close()
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith(
        f"switchboard: listener 'a' cannot listen on tcp:{port}:interface=127.0.0.1: "
        "Address already in use. Another program (perhaps another switchboard engine) is "
        "using that address: stop it, or give listener 'a' another address in the config. "
        "Nothing was started."
    ), out.stderr
    assert "Traceback" not in out.stderr
    # it failed before touching the store: no migration, no writer, no delivery lease
    assert not (tmp_path / "store.db").exists()
    assert "delivery started" not in out.stderr + out.stdout


def test_missing_config_file(tmp_path):
    out = sb("check", "-c", str(tmp_path / "nope.yaml"))
    assert out.returncode == 1 and "nope.yaml" in out.stderr
    assert "Traceback" not in out.stderr


def test_certs_init(tmp_path):
    out = sb("certs", "init", "--dir", str(tmp_path / "c"))
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [
        "ca.key", "ca.pem", "client.key", "client.pem", "server.key", "server.pem"]  # fmt: skip
    again = sb("certs", "init", "--dir", str(tmp_path / "c"))
    assert again.returncode == 1 and "--force" in again.stderr


def test_env_without_pythonpath_runs_console_script():
    exe = Path(sys.executable).parent / "switchboard"
    if not exe.exists():
        pytest.skip("console script not installed in this environment")
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=30,
                         env={**os.environ})  # fmt: skip
    assert out.returncode == 0 and "switchboard" in out.stdout


@pytest.mark.parametrize("running", ["default", "ignoring"], indirect=True)
def test_reload_command_and_sighup(running, tmp_path):
    cfg, port, proc = running
    out = sb("reload", "-c", str(cfg))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "reloaded"
    channel = tmp_path / "channels" / "adt.yaml"
    good = channel.read_text()
    channel.write_text("name: adt\nsteps:\n  - sett: {MSH-5: X}\n")
    out = sb("reload", "-c", str(cfg))
    # the CLI itself checks the config first and reports the same error
    assert out.returncode == 1 and "unknown step kind 'sett'" in out.stderr
    channel.write_text(good)
    proc.send_signal(signal.SIGHUP)
    msg = write_msg(tmp_path, "a.hl7", "AFTER-HUP")
    assert sb("send", f"127.0.0.1:{port}", str(msg)).returncode == 0
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    events = [json.loads(x)["event"] for x in proc.stderr.read().splitlines() if x.startswith("{")]
    assert events.count("reloaded") == 2


def test_reload_with_an_admin_token(tmp_path):
    mllp, admin = free_port(), free_port()
    cfg = write_config(tmp_path, f"""
listeners:
  - {{name: in, mllp: "tcp:{mllp}:interface=127.0.0.1"}}
admin: {{listen: "tcp:{admin}:interface=127.0.0.1", token: "${{SB_TEST_TOKEN}}"}}
""")  # fmt: skip
    env = {**os.environ, "SB_TEST_TOKEN": "s3cret"}
    proc = subprocess.Popen([*SWITCHBOARD, "run", "-c", str(cfg)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        for _ in range(400):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{admin}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        ok = subprocess.run([*SWITCHBOARD, "reload", "-c", str(cfg)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
        assert ok.returncode == 0 and ok.stdout.strip() == "reloaded", ok.stderr
        bad = subprocess.run([*SWITCHBOARD, "reload", "-c", str(cfg)], cwd=REPO,
                             env={**env, "SB_TEST_TOKEN": "wrong"}, capture_output=True,
                             text=True, timeout=60)  # fmt: skip
        assert bad.returncode == 1 and "refused the admin token" in bad.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    # through POST /api/reload: audited once (the refused attempt changed nothing)
    assert audit_entries(tmp_path) == [("reload", "config", "token")]


def audit_entries(tmp_path: Path) -> list[tuple[str, str, str]]:
    """(action, target, actor) of the audit log of the store in tmp_path, oldest first."""
    from engine.admin.audit import recent
    from engine.store.db import create_store_engine

    store = create_store_engine(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        return [(e["action"], e["target"], e["actor"]) for e in reversed(recent(store))]
    finally:
        store.dispose()


def test_status_search_replay_and_tail(running, tmp_path):
    cfg, port, _ = running
    tail = subprocess.Popen([*SWITCHBOARD, "tail", "-c", str(cfg), "--count", "2", "--interval",
                             "0.1", "--after", "0"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    a, b = write_msg(tmp_path, "a.hl7", "TAIL1"), write_msg(tmp_path, "b.hl7", "TAIL2")
    assert sb("send", f"127.0.0.1:{port}", str(a), str(b)).returncode == 0
    out, err = tail.communicate(timeout=30)
    assert tail.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 2 and "TAIL1" in lines[0] and "TAIL2" in lines[1]

    status = sb("status", "-c", str(cfg))
    assert status.returncode == 0, status.stderr
    assert "mllp-in" in status.stdout and "LISTENER" in status.stdout
    found = sb("messages", "search", "-c", str(cfg), "--patient-id", "123", "--json")
    assert [json.loads(x)["control_id"] for x in found.stdout.splitlines()] == ["TAIL2", "TAIL1"]
    mid = json.loads(found.stdout.splitlines()[0])["id"]
    again = sb("replay", str(mid), "-c", str(cfg))
    assert again.returncode == 0 and "replayed 0 deliveries of 1 messages" in again.stdout


def test_replay_of_errored_messages_and_an_edited_body(running, tmp_path):
    """The channel failed; once fixed and reloaded, `replay ID` takes the message in again and
    `replay ID --body-file` takes an edited body in (same MSH-10), each linked to the first."""
    cfg, port, _ = running
    channel = tmp_path / "channels" / "adt.yaml"
    broken = "name: adt\nsteps:\n  - map: {field: PV1-2, values: {I: IP}, on_missing: error}\n"
    channel.write_text(broken)
    assert sb("reload", "-c", str(cfg)).returncode == 0
    msgs = []
    for name, cid in (("a.hl7", "ERR1"), ("b.hl7", "ERR2")):
        msgs.append(write_msg(tmp_path, name, cid))
        msgs[-1].write_bytes(msgs[-1].read_bytes() + b"PV1|1|X\r")
    assert sb("send", f"127.0.0.1:{port}", *map(str, msgs)).returncode == 0  # on_receipt: AA
    rows = [json.loads(x) for x in sb("messages", "-c", str(cfg), "--json").stdout.splitlines()]
    assert [(r["control_id"], r["status"]) for r in rows] == [("ERR2", "errored"),
                                                              ("ERR1", "errored")]  # fmt: skip
    second, first = rows[0]["id"], rows[1]["id"]
    channel.write_text(broken.replace("{I: IP}", "{X: XP}"))
    assert sb("reload", "-c", str(cfg)).returncode == 0

    out = sb("replay", str(first), "-c", str(cfg))
    assert out.returncode == 0, out.stderr
    (line,) = out.stdout.splitlines()
    assert line.startswith(f"message {first} taken in again as message ")
    assert line.endswith(": routed, AA")
    new = int(line.split("as message ")[1].split(":")[0])
    edited = tmp_path / "edited.hl7"
    edited.write_bytes(msgs[1].read_bytes().replace(b"DOE^JANE", b"DOE^JANET"))
    out = sb("replay", str(second), "-c", str(cfg), "--body-file", str(edited))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"message {second} taken in again as message ")
    assert out.stdout.rstrip().endswith(": routed, AA")

    shown = sb("messages", "-c", str(cfg), "show", str(first)).stdout
    assert "status               errored" in shown
    assert f"reprocessed_as       {new}" in shown
    shown = sb("messages", "-c", str(cfg), "show", str(new)).stdout
    assert f"reprocess_of         {first}" in shown and "status               routed" in shown
    assert "MSA|AA|ERR1" in shown
    listed = sb("messages", "-c", str(cfg), "--json").stdout.splitlines()
    assert [(json.loads(r)["control_id"], json.loads(r)["status"]) for r in listed] == [
        ("ERR2", "routed"), ("ERR1", "routed"), ("ERR2", "errored"), ("ERR1", "errored")
    ]  # fmt: skip
    out = sb("replay", "999", "-c", str(cfg))  # an unknown id: said so, exit 1
    assert out.returncode == 1 and "no message 999" in out.stderr
    assert audit_entries(tmp_path) == [
        ("reload", "config", "anonymous"), ("reload", "config", "anonymous"),
        ("replay", f"message {first}", "anonymous"),
        ("replay-edited", f"message {second}", "anonymous"),
    ]  # fmt: skip
