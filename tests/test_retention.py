"""Retention: pruning by age and status, open deliveries, batches, concurrent writes, and the
storage modes (SQLite and PostgreSQL)."""

from __future__ import annotations

import time

import pytest
import pytest_twisted
from sqlalchemy import create_engine, event, func, select, update
from sqlalchemy.exc import OperationalError
from twisted.internet.threads import deferToThread

from engine.store.db import create_store_engine
from engine.store.retention import (
    EVERYTHING,
    METADATA_ONLY,
    RAW_AND_FINAL,
    Policy,
    RetentionService,
    compact_delivered,
    message_mode,
    policies_from_options,
    prune,
    storage_mode_rows,
    strip_raw,
)
from engine.store.schema import (
    DEAD,
    DELIVERED,
    HELD,
    IN_FLIGHT,
    OPEN_STATES,
    PENDING,
    RETRYING,
    SKIPPED,
    channel_runs,
    deliveries,
    files,
    messages,
)

from .settings import store_options

DAY = 86400.0
NOW = 1_800_000_000.0
OLD = NOW - 10 * DAY
RECENT = NOW - DAY
WEEK = Policy(7 * DAY)


def message_row(cid: str, at: float, status: str = "routed", routes: str | None = "adt") -> dict:
    return {
        "received_at": at, "listener": "lab-in", "peer": "127.0.0.1:5000", "peer_cert": None,
        "control_id": cid, "message_type": "ADT", "trigger": "A01", "version": "2.5",
        "processing_id": "P", "sending_application": "SND", "sending_facility": "SF",
        "dedup_key": None, "status": status, "reason": None, "routes": routes,
        "charset": "iso-8859-1", "size": 9, "ack_code": "AA", "ack": f"ACK|{cid}".encode(),
        "duplicates": 0, "source_file": None, "raw": f"MSH|{cid}".encode(),
    }  # fmt: skip


def delivery_row(at: float, status: str = PENDING, **kw) -> dict:
    row = {"channel": "adt", "destination": "out", "status": status, "payload": b"OUT",
           "content_type": "application/hl7-v2", "created_at": at, **kw}  # fmt: skip
    row.setdefault("delivered_at", at if row["status"] == DELIVERED else None)
    return row


def add(engine, n: int = 1, *, at: float, status: str = "routed", routes: str | None = "adt",
        states: tuple = (), dels: tuple[dict, ...] = (), runs: int = 0) -> list[int]:  # fmt: skip
    """n messages received at ``at``, each with a delivery per state in ``states`` (plus
    ``dels``, full delivery rows) and ``runs`` channel runs. Returns their ids in order."""
    rows = [message_row(f"{status}-{at}-{i}", at, status, routes) for i in range(n)]
    with engine.begin() as conn:
        ids = list(
            conn.execute(
                messages.insert().returning(messages.c.id, sort_by_parameter_order=True), rows
            ).scalars()
        )
        children = [{**delivery_row(at, s), "message_id": i} for i in ids for s in states] + [
            {**delivery_row(at, **o), "message_id": i} for i in ids for o in dels
        ]
        if children:
            conn.execute(deliveries.insert(), children)
        if runs:
            conn.execute(
                channel_runs.insert(),
                [{"message_id": i, "channel": "adt", "status": "filtered", "created_at": at}
                 for i in ids for _ in range(runs)],
            )  # fmt: skip
    return ids


def ids_of(engine, table=messages) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(select(table.c.id).order_by(table.c.id)).scalars())


def count(engine, table, *where) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar()


def delivery_states(engine, message_id: int) -> list[str]:
    with engine.connect() as conn:
        q = select(deliveries.c.status).where(deliveries.c.message_id == message_id)
        return sorted(conn.execute(q).scalars())


# pruning ----------------------------------------------------------------------------------
def test_prune_by_age_takes_children_and_history(store_engine):
    old = add(store_engine, 3, at=OLD, states=(DELIVERED, DEAD, SKIPPED), runs=1)
    new = add(store_engine, 2, at=RECENT, states=(DELIVERED,), runs=1)
    report = prune(store_engine, WEEK, NOW)
    assert (report.messages, report.deliveries, report.channel_runs) == (3, 9, 3)
    assert (report.batches, report.complete) == (1, True)
    assert ids_of(store_engine) == new
    assert count(store_engine, deliveries, deliveries.c.message_id.in_(old)) == 0
    assert count(store_engine, channel_runs, channel_runs.c.message_id.in_(old)) == 0
    assert count(store_engine, deliveries) == 2 and count(store_engine, channel_runs) == 2
    again = prune(store_engine, WEEK, NOW)
    assert (again.messages, again.batches, again.complete) == (0, 0, True)


def test_prune_by_status_and_files(store_engine):
    rejected = add(store_engine, 2, at=OLD, status="rejected", routes=None)
    routed = add(store_engine, 2, at=OLD, states=(DELIVERED,))
    fresh = add(store_engine, 1, at=RECENT, status="rejected", routes=None)
    file_rows = [{"listener": "drop", "name": f"f{i}", "sha256": "0" * 64, "size": 1,
                  "processed_at": at, "status": "done", "messages": 1}
                 for i, at in enumerate((OLD, OLD, RECENT))]  # fmt: skip
    with store_engine.begin() as conn:
        conn.execute(files.insert(), file_rows)
    report = prune(store_engine, Policy(7 * DAY, ("rejected", "filtered")), NOW)
    assert (report.messages, report.files) == (2, 0)  # files only go with every status
    assert ids_of(store_engine) == routed + fresh
    assert set(rejected).isdisjoint(ids_of(store_engine))
    report = prune(store_engine, WEEK, NOW)
    assert (report.messages, report.deliveries, report.files) == (2, 2, 2)
    assert ids_of(store_engine) == fresh and count(store_engine, files) == 1
    with pytest.raises(ValueError, match="unknown message status"):
        Policy(DAY, ("routed", "gone"))


def test_open_deliveries_protect_their_message(store_engine):
    protected = {
        state: add(store_engine, at=OLD - 100, states=(DELIVERED, DEAD, state))[0]
        for state in OPEN_STATES
    }
    closed = add(store_engine, 3, at=OLD, states=(DEAD, SKIPPED, DELIVERED))
    # batches of 2 pass the protected (older) messages and still reach every closed one
    report = prune(store_engine, WEEK, NOW, batch_size=2)
    assert (report.messages, report.deliveries, report.batches) == (3, 9, 2)
    assert ids_of(store_engine) == sorted(protected.values())
    for state, mid in protected.items():
        assert delivery_states(store_engine, mid) == sorted([DELIVERED, DEAD, state])
    assert not set(closed) & set(ids_of(store_engine))
    purge = prune(store_engine, Policy(7 * DAY, keep_open_deliveries=False), NOW)
    assert (purge.messages, purge.deliveries) == (4, 12)
    assert count(store_engine, messages) == count(store_engine, deliveries) == 0


def test_batches_are_small_transactions(store_engine):
    add(store_engine, 1200, at=OLD, states=(DELIVERED,))
    keep = add(store_engine, 1, at=RECENT)
    commits, largest = [], []

    def on_execute(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith("DELETE FROM MESSAGES"):
            largest.append(len(params))

    event.listen(store_engine, "commit", lambda conn: commits.append(1))
    event.listen(store_engine, "before_cursor_execute", on_execute)
    report = prune(store_engine, WEEK, NOW, batch_size=500)
    assert (report.messages, report.deliveries, report.batches) == (1200, 1200, 3)
    assert len(commits) == 4  # one transaction per batch, and one finding no old files row
    assert sorted(largest) == [200, 500, 500]
    assert ids_of(store_engine) == keep


def test_max_batches_bounds_one_run(store_engine):
    add(store_engine, 10, at=OLD)
    first = prune(store_engine, WEEK, NOW, batch_size=3, max_batches=2, pause=0.001)
    assert (first.messages, first.batches, first.complete) == (6, 2, False)
    rest = prune(store_engine, WEEK, NOW, batch_size=3)
    assert (rest.messages, rest.batches, rest.complete) == (4, 2, True)
    stopped = prune(store_engine, Policy(0), NOW + 1, should_stop=lambda: True)
    assert (stopped.batches, stopped.complete) == (0, False)
    with pytest.raises(ValueError, match="batch_size"):
        prune(store_engine, WEEK, NOW, batch_size=0)


def test_replay_while_a_batch_runs(store_engine, store_url):
    """An operator replays the dead delivery of an old message while a batch runs: either the
    replay waits for the batch (SQLite: the batch holds the write lock from its first read)
    and then finds nothing, or it wins (PostgreSQL) and the message stays. Never a pending
    delivery deleted."""
    sqlite = store_engine.dialect.name == "sqlite"
    (mid,) = add(store_engine, at=OLD, states=(DEAD,))
    other = (
        create_engine(store_url, connect_args={"timeout": 0.1})
        if sqlite
        else create_store_engine(store_url)
    )
    replays = []

    def replay_now(conn, cursor, statement, params, context, executemany):
        if statement.startswith("SELECT messages.id, messages.received_at") and not replays:
            try:
                with other.begin() as c2:
                    replays.append(c2.execute(update(deliveries).values(status=PENDING)).rowcount)
            except OperationalError:
                replays.append("locked")

    event.listen(store_engine, "after_cursor_execute", replay_now)
    try:
        report = prune(store_engine, WEEK, NOW)
    finally:
        other.dispose()
    if sqlite:
        assert replays == ["locked"]
        assert (report.messages, ids_of(store_engine), count(store_engine, deliveries)) == (
            1,
            [],
            0,
        )
    else:
        assert replays == [1]
        assert report.messages == 0
        assert ids_of(store_engine) == [mid] and delivery_states(store_engine, mid) == [PENDING]


@pytest_twisted.inlineCallbacks
def test_prune_under_concurrent_writes(writer, store_engine):
    now = time.time()
    old = add(store_engine, 1000, at=now - 10 * DAY, states=(DELIVERED,))  # before any submit
    d = deferToThread(prune, store_engine, WEEK, now, batch_size=50, pause=0.002)
    written = []
    while not d.called:
        row = message_row(f"new{len(written)}", time.time())
        row["_deliveries"] = [delivery_row(row["received_at"])]
        (result,) = yield writer.submit([row], [0.0])
        written.append(result.id)
    report = yield d
    assert (report.messages, report.deliveries, report.batches) == (1000, 1000, 20)
    assert len(written) >= 3, "the writer did not commit while prune ran"
    assert ids_of(store_engine) == written  # every new row kept, every old one gone
    assert set(old).isdisjoint(written)
    with store_engine.connect() as conn:
        owners = conn.execute(select(deliveries.c.message_id).order_by(deliveries.c.message_id))
        assert list(owners.scalars()) == written


# storage modes ----------------------------------------------------------------------------
def test_storage_mode_rows_at_intake():
    row, runs, dels = message_row("A", NOW), [{"channel": "adt"}], [delivery_row(NOW)]
    for mode in (EVERYTHING, RAW_AND_FINAL, METADATA_ONLY):
        assert storage_mode_rows(mode, row, runs, dels) == (row, runs, dels)
    assert storage_mode_rows(RAW_AND_FINAL, row, [], [])[0]["raw"] == b"MSH|A"
    stripped, _, _ = storage_mode_rows(METADATA_ONLY, row, runs, [])
    assert stripped["raw"] == b"" and stripped["ack"] == b"ACK|A" and stripped["size"] == 9
    assert row["raw"] == b"MSH|A"  # pure: the caller's row is untouched
    with pytest.raises(ValueError, match="storage mode"):
        storage_mode_rows("some", row, runs, dels)


def test_message_mode_keeps_the_most():
    modes = {"adt": METADATA_ONLY, "lab": RAW_AND_FINAL, "all": EVERYTHING, "dflt": None}
    assert message_mode(None, modes, RAW_AND_FINAL) == RAW_AND_FINAL
    assert message_mode("adt", modes, EVERYTHING) == METADATA_ONLY
    assert message_mode("adt,lab", modes, EVERYTHING) == RAW_AND_FINAL
    assert message_mode("adt,all", modes, METADATA_ONLY) == EVERYTHING
    assert message_mode("adt,dflt", modes, METADATA_ONLY) == METADATA_ONLY
    assert message_mode("adt,removed", modes, EVERYTHING) == EVERYTHING


def payloads(engine) -> dict[tuple, bytes]:
    with engine.connect() as conn:
        q = select(deliveries.c.channel, deliveries.c.status, deliveries.c.delivered_at,
                   deliveries.c.payload)  # fmt: skip
        return {(r.channel, r.status, r.delivered_at): r.payload for r in conn.execute(q)}


def test_compact_delivered(store_engine):
    add(store_engine, at=OLD, dels=(
        {"status": DELIVERED, "delivered_at": OLD},
        {"status": DELIVERED, "delivered_at": RECENT},  # delivered after the cut-off
        {"status": DEAD}, {"status": HELD}, {"status": RETRYING},
        {"status": DELIVERED, "delivered_at": OLD, "channel": "lab"},
    ))  # fmt: skip
    modes = {"adt": RAW_AND_FINAL, "lab": EVERYTHING}
    report = compact_delivered(store_engine, NOW - 2 * DAY, modes=modes, default=EVERYTHING)
    assert (report.rows, report.batches) == (1, 1)
    assert payloads(store_engine) == {
        ("adt", DELIVERED, OLD): b"", ("adt", DELIVERED, RECENT): b"OUT",
        ("adt", DEAD, None): b"OUT", ("adt", HELD, None): b"OUT", ("adt", RETRYING, None): b"OUT",
        ("lab", DELIVERED, OLD): b"OUT",
    }  # fmt: skip
    # without modes: every channel; already emptied rows are not touched again
    assert compact_delivered(store_engine, NOW - 2 * DAY).rows == 1
    assert compact_delivered(store_engine, NOW).rows == 1
    add(store_engine, 5, at=OLD, states=(DELIVERED,))
    batched = compact_delivered(store_engine, NOW, batch_size=2)
    assert (batched.rows, batched.batches, batched.complete) == (5, 3, True)
    assert count(store_engine, deliveries, func.length(deliveries.c.payload) > 0) == 3


def raws(engine) -> dict[int, bytes]:
    with engine.connect() as conn:
        return dict(conn.execute(select(messages.c.id, messages.c.raw)).all())


def test_strip_raw_once_nothing_is_open(store_engine):
    modes = {"adt": METADATA_ONLY, "lab": EVERYTHING}
    (done,) = add(store_engine, at=OLD, states=(DELIVERED, SKIPPED))
    (waiting,) = add(store_engine, at=OLD, states=(DELIVERED, RETRYING))
    (dead,) = add(store_engine, at=OLD, states=(DEAD,))
    (shared,) = add(store_engine, at=OLD, routes="adt,lab", states=(DELIVERED,))
    (unrouted,) = add(store_engine, at=OLD, status="unrouted", routes=None)
    (fresh,) = add(store_engine, at=RECENT, states=(DELIVERED,))
    before = NOW - 2 * DAY
    report = strip_raw(store_engine, before, modes=modes, default=RAW_AND_FINAL, batch_size=2)
    assert (report.rows, report.batches) == (2, 2)  # 4 candidates; "waiting" is not one
    got = raws(store_engine)
    assert [i for i in sorted(got) if got[i] == b""] == [done, dead]
    assert all(got[i].startswith(b"MSH|") for i in (waiting, shared, unrouted, fresh))
    with store_engine.connect() as conn:  # metadata, ACK and the dead payload stay
        row = conn.execute(select(messages).where(messages.c.id == dead)).one()
        dead_payload = conn.execute(
            select(deliveries.c.payload).where(deliveries.c.message_id == dead)
        ).scalar()
    assert (row.ack, row.size, dead_payload) == (f"ACK|{row.control_id}".encode(), 9, b"OUT")
    # the retry is delivered at last; the store default now strips the unrouted one too
    with store_engine.begin() as conn:
        conn.execute(update(deliveries).where(deliveries.c.status == RETRYING)
                     .values(status=DELIVERED, delivered_at=NOW))  # fmt: skip
    report = strip_raw(store_engine, before, modes=modes, default=METADATA_ONLY)
    assert report.rows == 2
    got = raws(store_engine)
    assert {i for i in got if got[i] == b""} == {done, dead, waiting, unrouted}
    assert strip_raw(store_engine, before, modes={"adt": RAW_AND_FINAL}, default=EVERYTHING) == (
        type(report)()
    )  # no channel in metadata_only: nothing read at all


@pytest_twisted.inlineCallbacks
def test_retention_service_pass(store_engine):
    from twisted.internet import reactor

    options = store_options(
        storage=RAW_AND_FINAL,
        retention={"max_age": 30 * DAY, "compact_after": DAY, "interval": 3600.0,
                   "rules": [{"status": "rejected", "max_age": 7 * DAY}]},
    )  # fmt: skip
    assert policies_from_options(options.retention) == [
        Policy(7 * DAY, ("rejected",)),
        Policy(30 * DAY),
    ]
    assert policies_from_options(store_options().retention) == []
    now = reactor.seconds()
    gone = add(store_engine, at=now - 10 * DAY, status="rejected", routes=None)
    kept = add(store_engine, at=now - 10 * DAY, states=(DELIVERED, IN_FLIGHT))
    for channel in ("meta", "lab"):
        kept += add(store_engine, at=now - 10 * DAY, routes=channel,
                    dels=({"channel": channel, "status": DELIVERED},))  # fmt: skip
    reports = []
    service = RetentionService(
        store_engine, reactor, options, lambda: {"meta": METADATA_ONLY, "lab": EVERYTHING},
        on_report=reports.append,
    )  # fmt: skip
    service.startService()
    try:
        report = yield service.run_once()
    finally:
        yield service.stopService()
    assert reports == [report]
    assert (report.pruned.messages, report.compacted.rows, report.stripped.rows) == (1, 2, 1)
    assert ids_of(store_engine) == kept and gone[0] not in ids_of(store_engine)
    got = raws(store_engine)
    assert [got[i] == b"" for i in kept] == [False, True, False]
