"""The store on SQLite and PostgreSQL: migrations, group commit, duplicates, failures."""

from __future__ import annotations

import hashlib

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
    assert migrations.current(store_engine) == "0006"
    names = {i["name"] for i in inspect(store_engine).get_indexes("messages")}
    assert {"ix_messages_control_id", "ix_messages_received_at"} <= names
    assert "ix_messages_reprocess_of" in names  # 0006: partial, on linked rows only
    assert "ix_messages_dedup" not in names  # 0005: duplicates found by control id


def test_migrations_are_idempotent(store_engine):
    migrations.upgrade(store_engine)
    assert migrations.current(store_engine) == "0006"


@pytest_twisted.inlineCallbacks
def test_migration_0006_keeps_rows_and_their_duplicates(store_url):
    """A store from before fingerprints: its rows stay, and a resend of one is still its
    duplicate (no fingerprint to compare: the same body, as before)."""
    from twisted.internet import reactor

    engine = create_store_engine(store_url)
    migrations.upgrade(engine, "0005")
    old = {k: v for k, v in row("V1").items() if k != "patient_id"}
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO messages (received_at, listener, control_id, status, "
                          "size, raw, dedup_key, ack) VALUES (:received_at, :listener, "
                          ":control_id, :status, :size, :raw, :dedup_key, :ack)"), old)  # fmt: skip
    migrations.upgrade(engine)
    assert migrations.current(engine) == "0006"
    w = StoreWriter(engine, reactor)
    w.start()
    (dup,) = yield w.submit([row("V1", at=1001.0, body_hash=fingerprint(b"x"))], [DAY])
    yield w.stop()
    assert dup.duplicate_of is not None and dup.ack == b"ACK for V1 at 1000.0"


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
    (first, failed) = yield w1.submit([row("H1"), row("H2", status="errored")], [DAY, DAY])
    yield w1.stop()
    w2 = StoreWriter(create_store_engine(store_url), reactor)
    w2.start()
    (again, retry) = yield w2.submit([row("H1", at=1500.0), row("H2", at=1500.0)], [DAY, DAY])
    yield w2.stop()
    assert again.duplicate_of == first.id and again.ack == b"ACK for H1 at 1000.0"
    assert retry.duplicate_of is None and retry.reprocess_of == failed.id


def fingerprint(body: bytes, tag: bytes = b"\x00\x00") -> bytes:
    return tag + hashlib.blake2b(body, digest_size=16).digest()


def links(store_engine) -> dict[int, tuple]:
    m = messages.c
    with store_engine.connect() as conn:
        got = conn.execute(select(m.id, m.reprocess_of, m.conflicts_with, m.duplicates, m.status))
        return {r.id: tuple(r)[1:] for r in got}


@pytest_twisted.inlineCallbacks
def test_a_failed_message_is_no_duplicate_its_retry_is_linked(writer, store_engine):
    (err,) = yield writer.submit([row("Q1", status="errored", ack_code="AE")], [DAY])
    (retry,) = yield writer.submit([row("Q1", at=1001.0)], [DAY])
    assert retry.duplicate_of is None and retry.reprocess_of == err.id and retry.id != err.id
    (dup,) = yield writer.submit([row("Q1", at=1002.0)], [DAY])  # now in: a duplicate of it
    assert (dup.duplicate_of, dup.ack) == (retry.id, b"ACK for Q1 at 1001.0")
    # answered AR without being rejected (after_routing, no route): taken in again too
    (unrouted,) = yield writer.submit([row("Q2", status="unrouted", ack_code="AR")], [DAY])
    (again,) = yield writer.submit([row("Q2", at=1001.0)], [DAY])
    assert again.reprocess_of == unrouted.id
    # a rejected first copy, and a retry outside the window: new, not linked
    (rej,) = yield writer.submit([row("Q3", status="rejected", ack_code="AR")], [DAY])
    (late,) = yield writer.submit([row("Q3", at=1000.0 + 2 * DAY)], [DAY])
    assert late.reprocess_of is None and late.duplicate_of is None
    assert links(store_engine) == {
        err.id: (None, None, 0, "errored"), retry.id: (err.id, None, 1, "routed"),
        unrouted.id: (None, None, 0, "unrouted"), again.id: (unrouted.id, None, 0, "routed"),
        rej.id: (None, None, 0, "rejected"), late.id: (None, None, 0, "routed"),
    }  # fmt: skip


@pytest_twisted.inlineCallbacks
def test_retry_in_the_same_batch_is_linked(writer, store_engine):
    results = yield writer.submit(
        [row("S1", status="rejected", ack_code="AR"), row("S1", at=1001.0), row("S1", at=1002.0)],
        [DAY, DAY, DAY],
    )
    first, retry, dup = results
    assert retry.reprocess_of == first.id and dup.duplicate_of == retry.id
    assert links(store_engine) == {
        first.id: (None, None, 0, "rejected"), retry.id: (first.id, None, 1, "routed")}  # fmt: skip


@pytest_twisted.inlineCallbacks
def test_conflicting_bodies_follow_the_rows_policy(writer, store_engine):
    a, b, c = fingerprint(b"a"), fingerprint(b"b"), fingerprint(b"c")
    (first,) = yield writer.submit([row("T1", body_hash=a)], [DAY])
    # no policy in the row: answered with the first ACK (ack_first), flagged as a conflict
    (kept,) = yield writer.submit([row("T1", at=1001.0, body_hash=b)], [DAY])
    assert (kept.duplicate_of, kept.conflict_with, kept.ack) == (
        first.id, first.id, b"ACK for T1 at 1000.0")  # fmt: skip
    # a policy that stores it as it is (process)
    (processed,) = yield writer.submit(
        [row("T1", at=1002.0, body_hash=b, _on_conflict=lambda r: {})], [DAY]
    )
    assert processed.duplicate_of is None and processed.conflict_with == first.id
    # each body now has its message: resends are duplicates of their own
    (dup_a, dup_b) = yield writer.submit(
        [row("T1", at=1003.0, body_hash=a), row("T1", at=1003.0, body_hash=b)], [DAY, DAY]
    )
    assert (dup_a.duplicate_of, dup_b.duplicate_of) == (first.id, processed.id)
    assert dup_a.conflict_with is None and dup_b.conflict_with is None
    # a policy that rewrites the row (reject): stored with its changes
    changes = {"status": "rejected", "ack_code": "AR", "ack": b"AR", "_ack": b"AR"}
    (rejected,) = yield writer.submit(
        [row("T1", at=1004.0, body_hash=c, _on_conflict=lambda r: changes)], [DAY]
    )
    assert rejected.conflict_with == processed.id and rejected.changes == changes
    # a fingerprint made with another key cannot be compared; one from before this check
    # existed (NULL) neither: plain duplicates, as they always were
    (other_key,) = yield writer.submit(
        [row("T1", at=1005.0, body_hash=fingerprint(b"z", b"\x12\x34"),
             _on_conflict=lambda r: {})], [DAY])  # fmt: skip
    assert other_key.duplicate_of == processed.id and other_key.conflict_with is None
    (old,) = yield writer.submit([row("T2")], [DAY])
    (unknown,) = yield writer.submit(
        [row("T2", at=1001.0, body_hash=a, _on_conflict=lambda r: {})], [DAY]
    )
    assert unknown.duplicate_of == old.id
    with store_engine.connect() as conn:
        got = conn.execute(select(messages.c.id, messages.c.ack).where(
            messages.c.id == rejected.id)).one()  # fmt: skip
    assert got.ack == b"AR"
    assert links(store_engine) == {
        first.id: (None, None, 2, "routed"), processed.id: (None, first.id, 2, "routed"),
        rejected.id: (None, processed.id, 0, "rejected"), old.id: (None, None, 1, "routed"),
    }  # fmt: skip


@pytest_twisted.inlineCallbacks
def test_conflict_in_the_same_batch_is_linked(writer, store_engine):
    first, second = yield writer.submit(
        [row("U1", body_hash=fingerprint(b"a")),
         row("U1", at=1001.0, body_hash=fingerprint(b"b"), _on_conflict=lambda r: {})],
        [DAY, DAY],
    )  # fmt: skip
    assert second.conflict_with == first.id and second.id != first.id
    assert links(store_engine)[second.id] == (None, first.id, 0, "routed")


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
