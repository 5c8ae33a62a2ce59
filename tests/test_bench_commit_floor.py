"""bench/commit_floor.py runs against the current store code (it reaches into the writer)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "commit_floor.py"


def test_commit_floor_measures_each_row(tmp_path):
    out = subprocess.run(
        [sys.executable, str(BENCH), "--commits", "20", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    lines = {line[:32].strip(): line[32:].split() for line in out.splitlines()}
    assert len(lines["fdatasync of a 4 KB append"]) == 1
    for label in ("sqlite3 alone, one row", "store writer, one row"):
        full, off, diff = map(float, lines[label])
        assert full > 0 and off > 0 and abs(full - off - diff) < 0.2
    assert list(tmp_path.iterdir()) == []  # its files are removed
