"""The store on SQLite and PostgreSQL: migrations, group commit, duplicates, failures."""

from __future__ import annotations

import pytest
import pytest_twisted
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, inspect, select, text

from engine.store import migrations
from engine.store.db import create_store_engine
from engine.store.schema import messages, metadata
from engine.store.writer import StoreWriter

DAY = 86400.0


def row(control_id: str, at: float = 1000.0, **kw) -> dict:
    base = {
        "received_at": at,
        "listener": "lab-in",
        "peer": "127.0.0.1:5000",
        "peer_cert": None,
        "control_id": control_id,
        "message_type": "ADT",
        "trigger": "A01",
        "version": "2.5",
        "processing_id": "P",
        "sending_application": "SND",
        "sending_facility": "SF",
        "dedup_key": f"SND\x1fSF\x1f{control_id}",
        "status": "routed",
        "reason": None,
        "routes": "adt",
        "charset": "iso-8859-1",
        "size": 10,
        "ack_code": "AA",
        "ack": f"ACK for {control_id} at {at}".encode(),
        "duplicates": 0,
        "source_file": None,
        "raw": f"MSH|{control_id}".encode(),
    }
    base.update(kw)
    return base


def test_migrations_match_schema(store_engine):
    with store_engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diffs == []
    assert migrations.current(store_engine) == "0005"
    names = {i["name"] for i in inspect(store_engine).get_indexes("messages")}
    assert {"ix_messages_control_id", "ix_messages_received_at"} <= names
    assert "ix_messages_dedup" not in names  # 0005: duplicates found by control id


def test_migrations_are_idempotent(store_engine):
    migrations.upgrade(store_engine)
    assert migrations.current(store_engine) == "0005"


def test_sqlite_is_wal_and_full_sync(tmp_path):
    engine = create_store_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    engine.dispose()


@pytest_twisted.inlineCallbacks
def test_rows_written_and_ids_returned(writer, store_engine):
    results = yield writer.submit([row("A"), row("B")], [DAY, DAY])
    assert [r.duplicate_of for r in results] == [None, None]
    assert results[0].id < results[1].id
    with store_engine.connect() as conn:
        got = conn.execute(select(messages.c.id, messages.c.control_id, messages.c.raw)).all()
    assert [(g.id, g.control_id, g.raw) for g in got] == [
        (results[0].id, "A", b"MSH|A"),
        (results[1].id, "B", b"MSH|B"),
    ]


@pytest_twisted.inlineCallbacks
def test_group_commit_batches_concurrent_requests(writer, store_engine, metrics):
    from twisted.internet.defer import gatherResults

    ds = [writer.submit([row(f"C{i}")], [DAY]) for i in range(300)]
    results = yield gatherResults(ds)
    assert len({r[0].id for r in results}) == 300
    with store_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(messages)).scalar() == 300
    # 300 requests queued at once must not take 300 commits
    commits = metrics.registry.get_sample_value("switchboard_store_batch_size_count")
    assert 1 <= commits < 300


@pytest_twisted.inlineCallbacks
def test_duplicate_in_window_replays_first_ack(writer, store_engine):
    (first,) = yield writer.submit([row("D1", at=1000.0)], [DAY])
    (dup,) = yield writer.submit([row("D1", at=2000.0, ack=b"other")], [DAY])
    assert dup.duplicate_of == first.id
    assert dup.ack == b"ACK for D1 at 1000.0"
    with store_engine.connect() as conn:
        rows = conn.execute(select(messages.c.control_id, messages.c.duplicates)).all()
    assert [tuple(r) for r in rows] == [("D1", 1)]


@pytest_twisted.inlineCallbacks
def test_duplicate_within_one_batch(writer, store_engine):
    results = yield writer.submit([row("E1"), row("E1", ack=b"second")], [DAY, DAY])
    assert results[1].duplicate_of == results[0].id
    assert results[1].ack == b"ACK for E1 at 1000.0"
    with store_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(messages)).scalar() == 1


@pytest_twisted.inlineCallbacks
def test_duplicate_outside_window_is_stored(writer, store_engine):
    yield writer.submit([row("F1", at=1000.0)], [60.0])
    (later,) = yield writer.submit([row("F1", at=1100.0)], [60.0])
    assert later.duplicate_of is None
    (nocheck,) = yield writer.submit([row("F1", at=1101.0)], [0.0])
    assert nocheck.duplicate_of is None


@pytest_twisted.inlineCallbacks
def test_same_id_other_sender_is_not_a_duplicate(writer):
    yield writer.submit([row("G1")], [DAY])
    (other,) = yield writer.submit(
        [row("G1", sending_facility="OTHER", dedup_key="SND\x1fOTHER\x1fG1")], [DAY]
    )
    assert other.duplicate_of is None


@pytest_twisted.inlineCallbacks
def test_duplicate_found_among_rows_sharing_its_control_id(writer):
    """The check finds candidates by control id: newer rows with that id from another
    sender, or rejected (no dedup_key), must not be taken for the first message."""
    (first,) = yield writer.submit([row("K1", at=1000.0)], [DAY])
    yield writer.submit(
        [
            row("K1", at=1001.0, sending_facility="OTHER", dedup_key="SND\x1fOTHER\x1fK1"),
            row("K1", at=1002.0, status="rejected", dedup_key=None, ack=b"AR"),
        ],
        [DAY, 0.0],
    )
    (dup,) = yield writer.submit([row("K1", at=1003.0)], [DAY])
    assert (dup.duplicate_of, dup.ack) == (first.id, b"ACK for K1 at 1000.0")


@pytest_twisted.inlineCallbacks
def test_duplicates_detected_across_restart(store_url):
    from twisted.internet import reactor

    engine = create_store_engine(store_url)
    migrations.upgrade(engine)
    w1 = StoreWriter(engine, reactor)
    w1.start()
    (first,) = yield w1.submit([row("H1")], [DAY])
    yield w1.stop()
    w2 = StoreWriter(create_store_engine(store_url), reactor)
    w2.start()
    (again,) = yield w2.submit([row("H1", at=1500.0)], [DAY])
    yield w2.stop()
    assert again.duplicate_of == first.id and again.ack == b"ACK for H1 at 1000.0"


@pytest_twisted.inlineCallbacks
def test_bad_request_fails_alone(writer, store_engine):
    from twisted.internet.defer import DeferredList

    good = writer.submit([row("I1")], [DAY])
    bad = writer.submit([row("I2", status=None)], [DAY])  # NOT NULL violation
    good2 = writer.submit([row("I3")], [DAY])
    results = yield DeferredList([good, bad, good2], consumeErrors=True)
    assert [ok for ok, _ in results] == [True, False, True]
    with store_engine.connect() as conn:
        ids = conn.execute(select(messages.c.control_id).order_by(messages.c.id)).scalars().all()
    assert ids == ["I1", "I3"]


@pytest_twisted.inlineCallbacks
def test_a_request_is_stored_whole_or_not_at_all(writer, store_engine):
    """A bad row in the middle of a multi-row INSERT (INSERT OR FAIL keeps the rows before
    it until the rollback): none of the request's rows stay, and the writer goes on."""
    rows = [row(f"P{i}") for i in range(7)]
    rows[2]["status"] = None  # NOT NULL violation, in the first INSERT (4 + 2 + 1 rows)
    with pytest.raises(Exception, match=r"(?i)null"):
        yield writer.submit(rows, [DAY] * 7)
    (after,) = yield writer.submit([row("P9")], [DAY])
    assert after.duplicate_of is None
    with store_engine.connect() as conn:
        ids = conn.execute(select(messages.c.control_id)).scalars().all()
    assert ids == ["P9"]


@pytest_twisted.inlineCallbacks
def test_file_record_written_atomically_with_rows(writer, store_engine):
    record = {"listener": "drop", "name": "a.hl7", "sha256": "0" * 64, "size": 3,
              "processed_at": 1.0, "status": "done", "messages": 2, "reason": None}  # fmt: skip
    results = yield writer.submit([row("J1"), row("J2")], [DAY, DAY], file=record)
    file_id = results[0]
    with store_engine.connect() as conn:
        got = conn.execute(select(messages.c.source_file)).scalars().all()
    assert got == [file_id, file_id]


@pytest_twisted.inlineCallbacks
def test_stop_writes_everything_queued(store_url):
    from twisted.internet import reactor

    engine = create_store_engine(store_url)
    migrations.upgrade(engine)
    w = StoreWriter(engine, reactor)
    w.start()
    ds = [w.submit([row(f"K{i}")], [0.0]) for i in range(50)]
    yield w.stop()
    assert all(d.called for d in ds)
    check = create_store_engine(store_url)
    with check.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM messages")).scalar() == 50
    check.dispose()


def test_busy_errors_are_recognised():
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from engine.store.writer import _is_busy

    locked = sqlite3.OperationalError("database is locked")
    assert _is_busy(locked)
    assert _is_busy(OperationalError("INSERT ...", {}, locked))  # wrapped by SQLAlchemy
    assert not _is_busy(sqlite3.OperationalError("no such table: messages"))
    assert not _is_busy(sqlite3.IntegrityError("NOT NULL constraint failed"))


@pytest_twisted.inlineCallbacks
def test_a_failing_callback_does_not_strand_the_rest_of_the_batch(writer):
    from twisted.internet.defer import Deferred

    def broken(outcome):
        raise RuntimeError("a caller's bug")

    writer.submit_then([row("N1")], [DAY], broken)
    second = Deferred()
    writer.submit_then([row("N2")], [DAY], second.callback)  # same pass: the same batch
    (result,) = yield second
    assert result.id > 0 and writer.pending == 0
