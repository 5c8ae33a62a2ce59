"""bench/mllp_intake.py and bench/loadgen.py: their config, targets and failure reports (no
speed is measured or asserted here)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import mllp_intake  # noqa: E402

from engine.components import load_config  # noqa: E402


def test_the_defaults_run_senders_that_wait_for_each_ack():
    scenarios = mllp_intake.parse_scenarios(mllp_intake.DEFAULT_SCENARIOS)
    assert {(8, 1), (32, 1), (128, 1), (1, 1), (8, 8), (32, 4)} <= set(scenarios)


def test_the_engine_config_takes_every_connection_of_a_scenario(tmp_path):
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "bench.yaml").write_text("name: bench\n")
    args = SimpleNamespace(store_option=[("checkpoint_rows", "600")])
    text = mllp_intake.engine_config(args, tmp_path, 128, port=2575, admin=8480)
    (tmp_path / "bench.yaml").write_text(text)
    config = load_config(tmp_path / "bench.yaml")
    assert config.listeners[0].max_connections >= 129  # 128 and the probe
    assert config.store_options.checkpoint_rows == 600
    assert config.store_options.synchronous == "full"


def run(scenario: str, kind: str, msg_per_s: float, p99_ms: float = 2.0):
    return mllp_intake.RunResult(scenario, kind, 1000, acked=1000, msg_per_s=msg_per_s,
                                 p99_ms=p99_ms, server_cpu_us=90.0, startup_s=0.7)  # fmt: skip


def test_targets_for_senders_that_wait_for_each_ack_use_the_same_run_baseline():
    rows = [
        run("8x1", "engine", 8000), run("8x1", "baseline", 25000),
        run("32x1", "engine", 9000, p99_ms=12.0), run("32x1", "baseline", 25000),
        run("8x8", "engine", 9000), run("8x8", "baseline", 40000),
        run("1x8", "engine", 7000),
    ]  # fmt: skip
    got = {name: (value, ok) for name, value, ok in mllp_intake.targets(rows)}
    assert got[">= 7,000 msg/s, >= 0.30 of bare, p99 <= 10 ms (8x1)"] == (
        "8,000, 0.32, p99 2.0 ms", True)  # fmt: skip
    assert got[">= 0.35 of bare, p99 <= 10 ms (32x1)"] == ("9,000, 0.36, p99 12.0 ms", False)
    assert got[">= 8,000 msg/s, p99 <= 10 ms at 8 (8x8)"] == ("9,000, p99 2.0 ms", True)
    assert got[">= 2,000 msg/s at 1 connection (1x8)"] == ("7,000", True)
    # Without a baseline the ratio targets cannot be judged.
    got = {name: ok for name, _, ok in mllp_intake.targets([run("8x1", "engine", 8000)])}
    assert got[">= 7,000 msg/s, >= 0.30 of bare, p99 <= 10 ms (8x1)"] is None


def test_loadgen_reports_connections_the_server_closes_instead_of_waiting():
    """A server at max_connections accepts and closes at once: the load generator says so
    in its result at once, not after its time cap."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    stop = threading.Event()

    def refuse() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.close()

    t = threading.Thread(target=refuse, daemon=True)
    t.start()
    try:
        out = subprocess.run(
            [sys.executable, str(BENCH / "loadgen.py"), "--port", str(server.getsockname()[1]),
             "--conns", "3", "--messages", "30", "--time-cap", "60"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        stop.set()
        t.join(5)
        server.close()
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert out.returncode == 1 and result["errors"] == 3 and result["acked"] == 0
    assert not result.get("timed_out")
    assert all("closed" in e and "time cap" not in e for e in result["error_samples"])
