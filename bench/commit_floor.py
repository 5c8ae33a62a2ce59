"""The CPU floor of one durable commit per message: what 1 connection with 1 message in
flight (the 1x1 scenario of ``mllp_intake.py``) must pay however lean the engine is.

With one message in flight nothing can share a commit, so each message costs at least one
SQLite transaction with ``synchronous=FULL``, and that transaction at least one fdatasync.
This measures, in-process and in CPU time (user + system, this process):

- ``fdatasync``: append 4 KB to a file and fdatasync it, the disk's own price;
- ``sqlite3 alone``: the ``sqlite3`` module inserting one message row into the store's real
  schema (from the migrations) and committing, no engine code, WAL with FULL and with OFF;
- ``store writer``: the engine's own write of one row (StoreWriter, duplicate check
  included), as an inline commit does it, FULL and OFF.

The FULL - OFF difference is what durability itself costs. Add the bare Twisted server's
CPU per message at 1x1 (``mllp_intake.py`` prints it as ``baseline``) for the floor.

    .venv/bin/python bench/commit_floor.py [--commits 3000] [--dir /tmp]

The files go to a temporary directory under ``--dir`` (default: the system's), on the disk
being measured, and are removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loadgen import message

from engine.store import migrations
from engine.store.db import create_store_engine
from engine.store.writer import StoreWriter, WriteRequest

RAW = message(b"FLOOR")
DAY = 86400.0


def cpu() -> float:
    return time.process_time()


def row(i: int) -> dict:
    cid = f"FLOOR{i}"
    return {
        "received_at": time.time(), "listener": "bench", "peer": "127.0.0.1:1",
        "peer_cert": None, "control_id": cid, "message_type": "ADT", "trigger": "A01",
        "version": "2.5.1", "processing_id": "P", "sending_application": "BENCH_ADT",
        "sending_facility": "GENERAL_HOSP", "dedup_key": f"BENCH_ADT\x1fGENERAL_HOSP\x1f{cid}",
        "status": "routed", "reason": None, "routes": "bench", "charset": "UTF-8",
        "size": len(RAW), "ack_code": "AA", "ack": b"A" * 130, "duplicates": 0,
        "source_file": None, "raw": RAW, "patient_id": "4711234",
    }  # fmt: skip


def per_call(fn, n: int) -> float:
    """µs of CPU per call of fn(i), after n // 10 warm-up calls."""
    for i in range(n // 10):
        fn(-1 - i)
    t = cpu()
    for i in range(n):
        fn(i)
    return (cpu() - t) / n * 1e6


def bare_fdatasync(tmp: Path, n: int) -> float:
    fd = os.open(tmp / "sync.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    block = b"x" * 4096
    try:
        return per_call(lambda _i: (os.write(fd, block), os.fdatasync(fd)), n)
    finally:
        os.close(fd)


def new_store(tmp: Path, name: str, sync: str):
    engine = create_store_engine(f"sqlite:///{tmp / name}", synchronous=sync)
    migrations.upgrade(engine)
    return engine


def sqlite_alone(tmp: Path, sync: str, n: int) -> float:
    new_store(tmp, f"alone-{sync}.db", sync).dispose()  # the schema, from the migrations
    conn = sqlite3.connect(tmp / f"alone-{sync}.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={sync.upper()}")
    cols = list(row(0))
    sql = f"INSERT INTO messages ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"

    def one(i: int) -> None:
        r = row(i)
        conn.execute("BEGIN")
        conn.execute(sql, [r[c] for c in cols])
        conn.execute("COMMIT")

    try:
        return per_call(one, n)
    finally:
        conn.close()


def store_writer(tmp: Path, sync: str, n: int) -> float:
    engine = new_store(tmp, f"writer-{sync}.db", sync)
    writer = StoreWriter(engine, reactor=None)
    conn = engine.connect()

    def one(i: int) -> None:
        # what StoreWriter._commit_lone does for a message that arrives alone
        writer._write_batch(conn, [WriteRequest([row(i)], [DAY], None, None)], wait=False)

    try:
        return per_call(one, n)
    finally:
        conn.close()
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commits", type=int, default=3000, help="commits per measurement")
    ap.add_argument("--dir", default=None, help="where the temporary files go")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="commit-floor-", dir=args.dir))
    n = args.commits
    try:
        rows = [("fdatasync of a 4 KB append", bare_fdatasync(tmp, n), None)]
        for label, fn in (("sqlite3 alone, one row", sqlite_alone),
                          ("store writer, one row", store_writer)):  # fmt: skip
            rows.append((label, fn(tmp, "full", n), fn(tmp, "off", n)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"CPU per commit, µs ({n:,} commits each, {os.cpu_count()} CPUs, {tmp.parent})")
    print(f"{'':32}{'FULL':>8}{'OFF':>8}{'FULL-OFF':>10}")
    for label, full, off in rows:
        if off is None:
            print(f"{label:32}{full:8.1f}")
        else:
            print(f"{label:32}{full:8.1f}{off:8.1f}{full - off:10.1f}")
    print(
        "\nAt 1x1 every message pays one such commit on top of the bare baseline's CPU per"
        "\nmessage (mllp_intake.py, 'baseline' row) and intake's own work."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
