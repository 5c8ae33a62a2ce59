"""The file-drop listener against a real store: settle, claim, store whole, file away, restart."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
import pytest_twisted
from sqlalchemy import select
from twisted.internet import reactor, task

from engine.pipeline import Pipeline
from engine.router import Router
from engine.sources.file_drop import FileDropService
from engine.store.schema import files, messages

from . import settings
from .conftest import samples_or_skip

T0 = 1_750_000_000.0
LISTENER = {"name": "drop", "charset": "iso-8859-1", "duplicate_window": 86400.0,
            "ack": "on_receipt", "enhanced_ack": True, "normalize_newlines": True}  # fmt: skip

M1 = b"MSH|^~\\&|SND|SF|RCV|RF|20240101120000||ADT^A01^ADT_A01|C1|P|2.5\rPID|1\r"
M2 = b"MSH|^~\\&|SND|SF|RCV|RF|20240101120000||ADT^A08^ADT_A01|C2|P|2.5\rPID|2\r"
M3 = b"MSH|^~\\&|SND|SF|RCV|RF|20240101120000||ORU^R01^ORU_R01|C3|P|2.5\rOBX|1\r"


def sample(name: str) -> bytes:
    return (samples_or_skip() / name).read_bytes()


@pytest.fixture
def clock():
    c = task.Clock()
    c.advance(T0)
    return c


@pytest.fixture
def drop(tmp_path):
    return tmp_path / "drop"


@pytest.fixture
def make_service(drop, writer, metrics, clock):
    started: list[FileDropService] = []

    def make(**values) -> FileDropService:
        drop.mkdir(parents=True, exist_ok=True)
        values = {**LISTENER, "directory": str(drop), "poll_interval": 1.0, "settle_time": 2.0,
                  **values}  # fmt: skip
        pipeline = Pipeline(Router([]))
        ctx = settings.context(writer=writer, pipeline=lambda: pipeline, metrics=metrics,
                               clock=clock, reactor=reactor)  # fmt: skip
        svc = FileDropService(settings.listener(**values), ctx)
        started.append(svc)
        return svc

    yield make
    for svc in started:
        if svc.running:
            pytest_twisted.blockon(svc.stopService())


def put(path: Path, data: bytes, mtime: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))


def tick(svc: FileDropService, clock: task.Clock, seconds: float = 1.0):
    """Advance the poll clock and wait until the poll it starts is finished."""
    clock.advance(seconds)
    return svc.whenIdle()


@pytest_twisted.inlineCallbacks
def settle(svc, clock):
    """Polls until a file dropped now is settled (seen, then unchanged for settle_time)."""
    yield tick(svc, clock, 1.0)
    yield tick(svc, clock, svc.settle_time)


def stored(store_engine) -> list:
    m = messages.c
    with store_engine.connect() as conn:
        q = select(m.id, m.control_id, m.source_file, m.status, m.duplicates, m.peer, m.raw)
        return list(conn.execute(q.order_by(m.id)))


def file_rows(store_engine) -> list:
    f = files.c
    with store_engine.connect() as conn:
        q = select(f.id, f.name, f.sha256, f.size, f.status, f.messages, f.reason)
        return list(conn.execute(q.order_by(f.id)))


def files_metric(metrics, outcome: str) -> float:
    labels = {"listener": "drop", "outcome": outcome}
    return metrics.registry.get_sample_value("switchboard_files_total", labels) or 0.0


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest_twisted.inlineCallbacks
def test_batch_file_stored_with_source_file_and_ack_in_done(
    make_service, clock, drop, store_engine, metrics
):
    data = sample("file_fhs_bhs_bts_fts_python-hl7.hl7")
    svc = make_service()
    svc.startService()
    yield svc.whenIdle()
    put(drop / "adt.hl7", data, clock.seconds())
    yield settle(svc, clock)

    [record] = file_rows(store_engine)
    assert record.name == "adt.hl7" and record.status == "done" and record.messages == 3
    assert record.sha256 == hashlib.sha256(data).hexdigest() and record.size == len(data)
    rows = stored(store_engine)
    # The third message repeats the first one's MSH-10: stored once, counted as a duplicate.
    assert [r.control_id for r in rows] == ["12334456778890", "12334456778891"]
    assert {r.source_file for r in rows} == {record.id}
    assert [r.duplicates for r in rows] == [1, 0]
    assert {r.peer for r in rows} == {"file:drop"}
    assert all(r.raw.startswith(b"MSH|") and b"BHS" not in r.raw for r in rows)

    assert names(drop / "done") == ["adt.hl7", "adt.hl7.ack"]
    assert (drop / "done" / "adt.hl7").read_bytes() == data
    assert names(drop / ".processing") == [] and not (drop / "adt.hl7").exists()
    ack = (drop / "done" / "adt.hl7.ack").read_bytes().split(b"\r")
    assert [s[:3] for s in ack[:-1]] == [b"FHS", b"BHS", b"BTS", b"BHS", b"BTS", b"FTS"]
    assert ack[2] == b"BTS|0" and ack[5] == b"FTS|2"  # zero-ACK batches: all accepted
    assert ack[1].split(b"|")[11] == b"abchs20070101123401-1"
    assert files_metric(metrics, "done") == 1


@pytest_twisted.inlineCallbacks
def test_bad_batch_goes_to_error_with_reason(make_service, clock, drop, store_engine, metrics):
    data = sample("batch_bhs_bts_python-hl7.hl7").replace(b"BTS|2", b"BTS|5")
    svc = make_service()
    svc.startService()
    put(drop / "bad.hl7", data, clock.seconds())
    yield settle(svc, clock)

    assert stored(store_engine) == []
    [record] = file_rows(store_engine)
    assert record.status == "error" and record.messages == 0 and "BTS-1 says 5" in record.reason
    assert names(drop / "error") == ["bad.hl7", "bad.hl7.reason"]
    reason = (drop / "error" / "bad.hl7.reason").read_text()
    assert "BTS-1 says 5 messages, found 2" in reason
    assert names(drop / "done") == [] and names(drop / ".processing") == []
    assert files_metric(metrics, "error") == 1


@pytest_twisted.inlineCallbacks
def test_growing_file_not_taken_until_settled(make_service, clock, drop, store_engine):
    svc = make_service(settle_time=2.0)
    svc.startService()
    path = drop / "grow.hl7"
    content = M1
    for extra in (M2, M3):
        put(path, content, clock.seconds())
        yield tick(svc, clock)
        yield tick(svc, clock)
        assert path.exists() and stored(store_engine) == []
        content += extra
    put(path, content, clock.seconds())  # last write
    yield tick(svc, clock)  # seen
    yield tick(svc, clock)  # unchanged for 1 s: not yet
    assert path.exists() and names(drop / ".processing") == []
    yield tick(svc, clock)  # unchanged for 2 s: taken
    assert not path.exists()
    assert [r.control_id for r in stored(store_engine)] == ["C1", "C2", "C3"]


@pytest_twisted.inlineCallbacks
def test_recent_mtime_holds_a_file_back(make_service, clock, drop, store_engine):
    svc = make_service(settle_time=2.0)
    svc.startService()
    put(drop / "late.hl7", M1, clock.seconds() + 3)  # written "in the future" by a skewed clock
    for _ in range(4):
        yield tick(svc, clock)
    assert stored(store_engine) == []  # unchanged for 3 s, but mtime only 1 s old
    yield tick(svc, clock)
    assert [r.control_id for r in stored(store_engine)] == ["C1"]


@pytest_twisted.inlineCallbacks
def test_restart_with_recorded_file_in_processing_not_stored_twice(
    make_service, clock, drop, store_engine
):
    data = M1 + M2
    first = make_service()
    first.startService()
    put(drop / "a.hl7", data, clock.seconds())
    yield settle(first, clock)
    yield first.stopService()
    assert len(stored(store_engine)) == 2
    # A crash after the commit, before the ACK and the move: the file is still in .processing/.
    shutil.move(drop / "done" / "a.hl7", drop / ".processing" / "a.hl7")
    (drop / "done" / "a.hl7.ack").unlink()
    # And one that was claimed but never stored.
    put(drop / ".processing" / "b.hl7", M3, clock.seconds())

    second = make_service()
    second.startService()
    yield second.whenIdle()
    assert [r.control_id for r in stored(store_engine)] == ["C1", "C2", "C3"]
    assert [r.name for r in file_rows(store_engine)] == ["a.hl7", "b.hl7"]
    assert names(drop / ".processing") == []
    assert names(drop / "done") == ["a.hl7", "a.hl7.ack", "b.hl7", "b.hl7.ack"]
    ack = (drop / "done" / "a.hl7.ack").read_bytes()  # rebuilt, nothing stored again
    assert ack.count(b"\rMSA|AA|") == 2


@pytest_twisted.inlineCallbacks
def test_same_file_dropped_again_not_stored_twice(make_service, clock, drop, store_engine, metrics):
    svc = make_service()
    svc.startService()
    put(drop / "a.hl7", M1, clock.seconds())
    yield settle(svc, clock)
    put(drop / "a.hl7", M1, clock.seconds())
    yield settle(svc, clock)

    assert len(stored(store_engine)) == 1 and len(file_rows(store_engine)) == 1
    assert names(drop / "error") == ["a.hl7", "a.hl7.reason"]
    assert (drop / "error" / "a.hl7.reason").read_text() == "already processed\n"
    assert files_metric(metrics, "duplicate") == 1 and files_metric(metrics, "done") == 1
    # Same name, new content: a new file, kept beside the first under a numbered name.
    put(drop / "a.hl7", M2, clock.seconds())
    yield settle(svc, clock)
    assert [r.control_id for r in stored(store_engine)] == ["C1", "C2"]
    assert names(drop / "done") == ["a.1.hl7", "a.1.hl7.ack", "a.hl7", "a.hl7.ack"]


@pytest_twisted.inlineCallbacks
def test_headerless_multi_message_file(make_service, clock, drop, store_engine):
    svc = make_service()
    svc.startService()
    data = (
        b"\n# nightly export\n"
        + (M1 + M2).replace(b"\r", b"\r\n")
        + b"\x0b" + M3 + b"\x1c\r"
    )  # fmt: skip
    put(drop / "export.txt", data, clock.seconds())
    yield settle(svc, clock)

    rows = stored(store_engine)
    assert [r.raw for r in rows] == [M1, M2, M3]
    [record] = file_rows(store_engine)
    assert {r.source_file for r in rows} == {record.id} and record.messages == 3
    acks = (drop / "done" / "export.txt.ack").read_bytes()
    msa = [s for s in acks.split(b"\r") if s.startswith(b"MSA")]
    assert msa == [b"MSA|AA|C1", b"MSA|AA|C2", b"MSA|AA|C3"]
    assert acks.count(b"MSH|") == 3


@pytest_twisted.inlineCallbacks
def test_all_rejected_file_still_done_with_ar(make_service, clock, drop, store_engine):
    svc = make_service(versions=["2.3"])
    svc.startService()
    data = sample("batch_bhs_bts_python-hl7.hl7")
    put(drop / "v25.hl7", data, clock.seconds())
    yield settle(svc, clock)

    assert [r.status for r in stored(store_engine)] == ["rejected", "rejected"]
    assert names(drop / "done") == ["v25.hl7", "v25.hl7.ack"]
    ack = (drop / "done" / "v25.hl7.ack").read_bytes().split(b"\r")
    assert [s for s in ack if s.startswith(b"MSA")] == [
        b"MSA|AR|12334456778890",
        b"MSA|AR|12334456778891",
    ]
    assert ack[-2] == b"BTS|2"
    assert ack[1].startswith(b"MSH|^~\\&|") and b"|ACK^A04^ACK|" in ack[1]


@pytest_twisted.inlineCallbacks
def test_pattern_dotfiles_and_subdirectories_ignored(make_service, clock, drop, store_engine):
    svc = make_service(pattern="*.hl7")
    svc.startService()
    put(drop / "notes.txt", M1, clock.seconds())
    put(drop / ".partial.hl7", M2, clock.seconds())
    put(drop / "sub.hl7" / "inner.hl7", M3, clock.seconds())
    put(drop / "ok.hl7", M3, clock.seconds())
    yield settle(svc, clock)
    assert [r.control_id for r in stored(store_engine)] == ["C3"]
    assert names(drop) == [".partial.hl7", ".processing", "done", "error", "notes.txt", "sub.hl7"]


@pytest_twisted.inlineCallbacks
def test_stop_waits_for_the_file_in_progress(make_service, clock, drop, store_engine):
    svc = make_service()
    svc.startService()
    put(drop / "a.hl7", M1 + M2, clock.seconds())
    yield tick(svc, clock)
    clock.advance(svc.settle_time)  # claims the file; its store lookup runs in a thread
    assert names(drop / ".processing") == ["a.hl7"]
    stopped = svc.stopService()
    assert not stopped.called
    yield stopped
    assert names(drop / "done") == ["a.hl7", "a.hl7.ack"]
    assert len(stored(store_engine)) == 2
    put(drop / "b.hl7", M3, clock.seconds())
    clock.advance(10)  # stopped: no more polls
    assert (drop / "b.hl7").exists()


@pytest_twisted.inlineCallbacks
def test_no_new_poll_while_a_file_is_in_progress(make_service, clock, drop, store_engine):
    svc = make_service()
    svc.startService()
    put(drop / "a.hl7", M1, clock.seconds() - 10)
    put(drop / "b.hl7", M2, clock.seconds())
    yield tick(svc, clock)
    clock.advance(svc.settle_time)  # a.hl7 (older) claimed first; its lookup runs in a thread
    assert names(drop / ".processing") == ["a.hl7"]
    clock.advance(svc.poll_interval)  # this tick is skipped: b.hl7 stays where it is
    assert (drop / "b.hl7").exists()
    yield svc.whenIdle()  # the running poll goes on with b.hl7
    assert [r.control_id for r in stored(store_engine)] == ["C1", "C2"]
    assert names(drop / "done") == ["a.hl7", "a.hl7.ack", "b.hl7", "b.hl7.ack"]


@pytest_twisted.inlineCallbacks
def test_failed_store_write_puts_the_file_back(make_service, clock, drop, writer, metrics):
    svc = make_service()
    svc.startService()
    yield writer.stop()  # every submit now fails
    put(drop / "a.hl7", M1, clock.seconds())
    yield settle(svc, clock)
    assert names(drop) == [".processing", "a.hl7", "done", "error"]
    assert names(drop / ".processing") == [] and names(drop / "done") == []
    assert files_metric(metrics, "done") == 0 and files_metric(metrics, "error") == 0
