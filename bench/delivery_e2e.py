"""End to end: MLLP in, a three-step channel (filter, translate, set), MLLP out to a peer
that ACKs, all durable; then the time to drain a backlog after the peer comes back.

    .venv/bin/python bench/delivery_e2e.py [--messages 20000] [--backlog 100000]
    .venv/bin/python bench/delivery_e2e.py --scenarios 8x1 --backlog 0

The engine and the peer (bench/baseline_server.py, which ACKs every message) are separate
processes; load comes from bench/loadgen.py, one measured run per scenario (C connections x W
in flight; by default 8x8, then 8x1: senders that wait for each ACK), one after the other on
the same engine. End-to-end rate = messages / time until the engine's
switchboard_delivered_total reaches them all. The backlog is loaded at 8x8.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mllp_intake import (
    THREE_STEP_CHANNEL,
    VITALS_TABLE,
    command,
    cpu_seconds,
    free_port,
    http_get,
    rss_mb,
    stop,
    store_option,
)

HERE = Path(__file__).resolve().parent
PY = sys.executable
SWITCHBOARD = str(Path(PY).parent / "switchboard")


def metric(admin: int, name: str) -> float:
    _, body = http_get(f"http://127.0.0.1:{admin}/metrics", timeout=5)
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def start_peer(port: int) -> subprocess.Popen:
    proc = subprocess.Popen([PY, str(HERE / "baseline_server.py"), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    time.sleep(0.5)
    return proc


def start_engine(
    tmp: Path, peer_port: int, switchboard: str, store_options=()
) -> tuple[subprocess.Popen, int, int]:
    (tmp / "channels").mkdir(parents=True, exist_ok=True)
    (tmp / "transforms" / "tables").mkdir(parents=True, exist_ok=True)
    (tmp / "transforms" / "tables" / "vitals.csv").write_text(VITALS_TABLE)
    (tmp / "channels" / "bench.yaml").write_text(
        THREE_STEP_CHANNEL.replace("tcp:127.0.0.1:9", f"tcp:127.0.0.1:{peer_port}").replace(
            "ack_timeout: 30s}", "ack_timeout: 30s, retry: {max_attempts: 1000, backoff: 100ms, "
            "max_backoff: 1s}}")
    )  # fmt: skip
    port, admin = free_port(), free_port()
    cfg = tmp / "bench.yaml"
    cfg.write_text(
        f"store: sqlite:///{tmp}/bench.db\n"
        f"store_options: {{{', '.join(f'{k}: {v}' for k, v in store_options)}}}\n"
        f"listeners:\n  - {{name: bench, mllp: 'tcp:{port}:interface=127.0.0.1'}}\n"
        f"admin: {{listen: 'tcp:{admin}:interface=127.0.0.1'}}\n"
        "logging: {level: warning, format: json}\n"
        "routes:\n  - {match: {type: ADT}, to: [bench]}\n"
    )
    with open(tmp / "engine.log", "wb") as log:
        proc = subprocess.Popen(
            [switchboard, "run", "-c", str(cfg)], cwd=tmp, stdout=subprocess.DEVNULL, stderr=log
        )
    for _ in range(400):
        if http_get(f"http://127.0.0.1:{admin}/healthz", timeout=1)[0] == 200:
            return proc, port, admin
        time.sleep(0.05)
    stop(proc)
    raise RuntimeError((tmp / "engine.log").read_text()[-2000:])


# Targets per scenario: issue 3 (pipelining senders) and issue 13 (one message in flight).
TARGETS = {(8, 8): 3000, (8, 1): 2500}


def load(port: int, n: int, tag: str, conns: int = 8, window: int = 8) -> dict:
    cmd = [PY, str(HERE / "loadgen.py"), "--port", str(port), "--conns", str(conns),
           "--window", str(window), "--messages", str(n), "--tag", tag,
           "--time-cap", "900"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1000)
    return json.loads(out.stdout.strip().splitlines()[-1])


def wait_delivered(admin: int, n: float, cap: float = 900.0) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < cap:
        if metric(admin, "switchboard_delivered_total") >= n:
            return time.monotonic()
        time.sleep(0.05)
    raise RuntimeError(f"only {metric(admin, 'switchboard_delivered_total'):.0f} of {n} delivered")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--backlog", type=int, default=100000, help="0: no backlog run")
    ap.add_argument("--scenarios", default="8x8,8x1", help="CxW,... run one after the other")
    ap.add_argument(
        "--switchboard", default=SWITCHBOARD, type=command, help="the switchboard command"
    )
    ap.add_argument("--store-option", metavar="KEY=VALUE", action="append", default=[],
                    type=store_option, help="an engine store_options entry (A/B)")  # fmt: skip
    args = ap.parse_args()
    scenarios = [tuple(int(x) for x in s.lower().split("x")) for s in args.scenarios.split(",")]
    runs, drain = [], None
    with tempfile.TemporaryDirectory(prefix="sb-e2e-") as d:
        tmp = Path(d)
        peer_port = free_port()
        peer = start_peer(peer_port)
        engine = None
        try:
            engine, port, admin = start_engine(tmp, peer_port, args.switchboard, args.store_option)
            load(port, 2000, "WARM")  # warm-up
            wait_delivered(admin, 2000)
            for conns, window in scenarios:
                runs.append(measure(engine.pid, port, admin, args.messages, conns, window))
            if args.backlog:
                # the peer goes down, the backlog queues up durably, the peer comes back
                stop(peer)
                done_before = metric(admin, "switchboard_delivered_total")
                lg = load(port, args.backlog, "BACKLOG")
                peer = start_peer(peer_port)
                t0 = time.monotonic()
                t_done = wait_delivered(admin, done_before + args.backlog)
                drain = {
                    "queued": args.backlog, "intake_errors": lg.get("errors"),
                    "drain_seconds": round(t_done - t0, 1),
                    "drain_msg_per_s": round(args.backlog / (t_done - t0)),
                }  # fmt: skip
        finally:
            if engine is not None:
                stop(engine)
            stop(peer)
    print("End to end: MLLP in -> filter + translate + set -> MLLP out (durable)")
    for e in runs:
        print(f"  {e['scenario']}: {e['messages']:,} messages: {e['e2e_msg_per_s']:,} msg/s "
              f"delivered end to end (intake {e['intake_msg_per_s']:,} msg/s), ACK p50 "
              f"{e['ack_p50_ms']} ms p99 {e['ack_p99_ms']} ms, server CPU "
              f"{e['server_cpu_us_per_msg']} µs/msg, RSS {e['rss_mb']} MB, "
              f"errors {e['errors']}")  # fmt: skip
    for e in runs:
        target = TARGETS.get(e["key"])
        if target:
            ok = e["e2e_msg_per_s"] >= target
            print(f"  target >= {target:,} msg/s end to end at {e['scenario']}: "
                  f"{'met' if ok else 'NOT MET'}")  # fmt: skip
    if drain:
        print(
            f"Backlog: {drain['queued']:,} queued while the peer was down drained in "
            f"{drain['drain_seconds']} s ({drain['drain_msg_per_s']:,} msg/s) after it came back"
        )
    return 1 if any(e["errors"] for e in runs) else 0


def measure(pid: int, port: int, admin: int, n: int, conns: int, window: int) -> dict:
    """One measured run at conns x window, until every message is delivered."""
    name = f"{conns}x{window}"
    base = metric(admin, "switchboard_delivered_total")
    cpu0 = sum(cpu_seconds(pid))
    t0 = time.monotonic()
    lg = load(port, n, f"E2E{name}-", conns, window)
    t_intake = time.monotonic()
    t_done = wait_delivered(admin, base + n)
    cpu = sum(cpu_seconds(pid)) - cpu0
    return {
        "scenario": name, "key": (conns, window), "messages": n,
        "intake_msg_per_s": round(n / (t_intake - t0)),
        "e2e_msg_per_s": round(n / (t_done - t0)),
        "ack_p50_ms": lg.get("p50_ms"), "ack_p99_ms": lg.get("p99_ms"),
        "server_cpu_us_per_msg": round(cpu / n * 1e6),
        "rss_mb": round(rss_mb(pid), 1), "errors": lg.get("errors"),
    }  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
