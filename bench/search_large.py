"""Message search on a large store: builds N message rows (default 1,000,000) in a
temporary SQLite store and times the admin searches that use the indexes.

    .venv/bin/python bench/search_large.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.admin.search import Search, search_messages
from engine.store import migrations
from engine.store.db import create_store_engine
from engine.store.schema import messages

TYPES = [("ADT", "A01"), ("ADT", "A08"), ("ORU", "R01"), ("ORM", "O01")]
STATUSES = ["routed", "routed", "routed", "unrouted", "rejected", "errored"]


def build(engine, rows: int) -> float:
    start = time.perf_counter()
    rand = random.Random(7)
    t0 = 1_760_000_000.0
    chunk = []
    with engine.begin() as conn:
        for i in range(1, rows + 1):
            kind, trigger = TYPES[i % 4]
            chunk.append({
                "id": i, "received_at": t0 + i * 0.05, "listener": f"in{i % 3}", "peer": "x",
                "control_id": f"C{i:08d}", "message_type": kind, "trigger": trigger,
                "status": STATUSES[i % 6], "size": 1500, "raw": b"",
                "patient_id": f"P{rand.randrange(200_000):06d}", "sending_application": "LAB",
            })  # fmt: skip
            if len(chunk) == 20_000:
                conn.execute(messages.insert(), chunk)
                chunk = []
        if chunk:
            conn.execute(messages.insert(), chunk)
    return time.perf_counter() - start


def timed(engine, f: Search, runs: int = 20) -> tuple[float, int]:
    search_messages(engine, f)
    best = []
    for _ in range(runs):
        t = time.perf_counter()
        rows = search_messages(engine, f)
        best.append(time.perf_counter() - t)
    best.sort()
    return best[len(best) // 2] * 1000, len(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        engine = create_store_engine(f"sqlite:///{d}/search.db")
        migrations.upgrade(engine)
        built = build(engine, args.rows)
        t_mid = 1_760_000_000.0 + args.rows * 0.025
        cases = {
            "control id": Search(control_id=f"C{args.rows // 2:08d}"),
            "patient id": Search(patient_id="P012345"),
            "type ADT^A08, last 50": Search(message_type="ADT^A08", limit=50),
            "type ORU (no trigger), last 50": Search(message_type="ORU", limit=50),
            "status errored, 1 h window": Search(
                status="errored", since=t_mid, until=t_mid + 3600, limit=100
            ),
            "time range, 1 h, newest 100": Search(since=t_mid, until=t_mid + 3600, limit=100),
        }
        print(f"{args.rows:,} messages built in {built:.1f} s (SQLite, indexes of migration 0004)")
        print(f"{'search':32} {'median ms':>10} {'rows':>6}  target < 100 ms")
        for name, f in cases.items():
            ms, n = timed(engine, f)
            print(f"{name:32} {ms:>10.2f} {n:>6}  {'met' if ms < 100 else 'NOT MET'}")
        engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
