"""A drop directory on a running engine: the shared batch samples end in done/ with ACKs."""

from __future__ import annotations

import shutil

import pytest_twisted
from sqlalchemy import select
from twisted.internet import reactor
from twisted.internet.task import deferLater

from engine.store.schema import files, messages

from .conftest import samples_or_skip
from .engine_harness import start_engine


@pytest_twisted.inlineCallbacks
def test_batch_file_dropped_on_running_engine(tmp_path):
    samples = samples_or_skip()
    drop = tmp_path / "drop"
    sb = start_engine(
        tmp_path,
        f"""
listeners:
  - name: drop
    directory: {drop}
    poll_interval: 50ms
    settle_time: 0s
routes:
  - {{match: {{type: ADT}}, to: [adt]}}
""",
    )
    try:
        shutil.copy(samples / "file_fhs_bhs_bts_fts_python-hl7.hl7", drop / "f.hl7")
        (drop / "bad.hl7").write_bytes(b"BHS|^~\\&|A\rBTS|0\r")
        for _ in range(500):  # bounded: 5 s
            if (drop / "done" / "f.hl7").exists() and (drop / "error" / "bad.hl7").exists():
                break
            yield deferLater(reactor, 0.01, lambda: None)
        assert (drop / "done" / "f.hl7").exists()
        ack = (drop / "done" / "f.hl7.ack").read_bytes()
        assert ack.startswith(b"FHS|") and b"\rFTS|2" in ack
        assert (drop / "error" / "bad.hl7").exists()
        assert "BHS" in (drop / "error" / "bad.hl7.reason").read_text()
        with sb.store.engine.connect() as conn:
            got = conn.execute(
                select(messages.c.control_id, messages.c.listener, messages.c.status)
            ).all()
            recorded = conn.execute(select(files.c.name, files.c.status)).all()
        # three messages; the repeated MSH-10 in the second batch is answered as a duplicate
        assert [g.listener for g in got] == ["drop"] * len(got)
        assert {g.control_id for g in got} == {"12334456778890", "12334456778891"}
        assert sorted(recorded) == [("bad.hl7", "error"), ("f.hl7", "done")]
    finally:
        yield sb.stopService()
