"""Retention: pruning old messages, and the storage modes that empty payloads once delivered.

Pruning
-------
A :class:`Policy` names the messages that go: received more than ``max_age`` seconds ago, in
the given statuses (None: any). They go with their channel_runs and deliveries (delivered,
dead and skipped rows are the message's history), except a message that still has an open
delivery (pending, in_flight, retry, held): what is still to be delivered is never deleted.
A policy over every status also prunes ``files`` rows processed before the cut-off (they
only stop a second drop of the same file from being stored twice).

:func:`prune` works in batches: select up to ``batch_size`` candidate ids, oldest first,
delete their children and then them, commit. One short transaction per batch:

* SQLite has one write lock, taken by the store writer once per group commit. A batch opens
  with BEGIN IMMEDIATE, so it waits for the lock (busy_timeout) *before* it reads: its
  select and deletes see one state, it never fails on a stale snapshot, and the writer
  waits for one small batch at most. ``pause`` leaves the lock free between batches.
* PostgreSQL: candidates are locked FOR UPDATE SKIP LOCKED (nodes pruning the same store
  take different messages), then their deliveries FOR UPDATE, and the open check is made
  again on the locked rows: a dead delivery an operator replays meanwhile keeps its message.

A cursor on (received_at, id) moves forward across the batches of a run, so the messages
kept (open deliveries) are read once per run, not once per batch. ``max_age`` must exceed
every listener's ``duplicate_window``: duplicate detection looks for the first copy in the
store.

Storage modes
-------------
Per channel, ``everything`` (default), ``raw_and_final`` or ``metadata_only``. A message
takes the mode of its channels that keeps the most (everything > raw_and_final >
metadata_only); a message routed nowhere (rejected, unrouted) takes the store default.

* ``everything``: all is kept until pruned.
* ``raw_and_final``: the raw message, the ACK and every delivery's outcome (status, peer's
  response) are kept; a delivery's payload is emptied (b"") once it is delivered and older
  than a cut-off (:func:`compact_delivered`). Dead, held and skipped payloads stay: they
  can still be replayed.
* ``metadata_only``: as raw_and_final, and ``raw`` is emptied too once none of the message's
  deliveries is open (:func:`strip_raw`); a message with no delivery at all is stored
  without it (:func:`storage_mode_rows`, at intake). The indexed fields, ``size``, the ACK
  (duplicates replay it), channel runs and delivery outcomes stay.

So a message stays deliverable until it is delivered: the worker sends
``deliveries.payload``, which is only emptied on delivered rows, and ``raw`` outlives every
open delivery. Emptying runs after the fact in batches (same transactions as pruning), so
intake's hot path does not change. :class:`RetentionService` runs it all periodically.

Everything here blocks (SQLAlchemy Core); run it in a thread, never on the reactor.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields

from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.engine import Engine
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool

from engine.logging import get_logger
from engine.store.schema import (
    DELIVERED,
    OPEN_STATES,
    STATUSES,
    channel_runs,
    deliveries,
    files,
    messages,
)

EVERYTHING, RAW_AND_FINAL, METADATA_ONLY = "everything", "raw_and_final", "metadata_only"
STORAGE_MODES = (EVERYTHING, RAW_AND_FINAL, METADATA_ONLY)
_KEEPS = {METADATA_ONLY: 0, RAW_AND_FINAL: 1, EVERYTHING: 2}
MAX_BATCH_SIZE = 10_000  # bound parameters per IN list (SQLite allows 32766)

m = messages.c
d = deliveries.c
log = get_logger("retention")
StopCheck = Callable[[], bool]


# reports ----------------------------------------------------------------------------------
@dataclass(slots=True)
class PruneReport:
    """Rows deleted per table, batches (transactions that found work), wall time, and whether
    the run got to the end (False: stopped by max_batches or should_stop)."""

    messages: int = 0
    channel_runs: int = 0
    deliveries: int = 0
    files: int = 0
    batches: int = 0
    seconds: float = 0.0
    complete: bool = True

    def __add__(self, other: PruneReport) -> PruneReport:
        return _add(self, other)


@dataclass(slots=True)
class CompactReport:
    """Rows emptied, batches, wall time, complete (as PruneReport)."""

    rows: int = 0
    batches: int = 0
    seconds: float = 0.0
    complete: bool = True

    def __add__(self, other: CompactReport) -> CompactReport:
        return _add(self, other)


def _add(a, b):
    values = {f.name: getattr(a, f.name) + getattr(b, f.name) for f in fields(a)}
    values["complete"] = a.complete and b.complete
    return type(a)(**values)


@dataclass(slots=True)
class RetentionReport:
    pruned: PruneReport = field(default_factory=PruneReport)
    compacted: CompactReport = field(default_factory=CompactReport)  # delivery payloads
    stripped: CompactReport = field(default_factory=CompactReport)  # messages.raw

    @property
    def changed(self) -> bool:
        p = self.pruned
        return bool(p.messages or p.files or self.compacted.rows or self.stripped.rows)


# policies ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Policy:
    max_age: float  # seconds, by messages.received_at
    statuses: tuple[str, ...] | None = None  # None: every status (and files rows)
    keep_open_deliveries: bool = True

    def __post_init__(self):
        if not self.max_age >= 0:
            raise ValueError(f"max_age must be at least 0 seconds, got {self.max_age!r}")
        if self.statuses is not None:
            statuses = (self.statuses,) if isinstance(self.statuses, str) else self.statuses
            object.__setattr__(self, "statuses", tuple(statuses))
            unknown = set(self.statuses) - set(STATUSES)
            if unknown:
                raise ValueError(f"unknown message status {sorted(unknown)}; one of {STATUSES}")


def policies_from_options(retention) -> list[Policy]:
    """Policies of the validated ``store_options.retention``: its rules (shorter ages for some
    statuses), then ``max_age`` for every status. None of them: nothing is pruned."""
    out = [Policy(r.max_age, tuple(_as_list(r.status))) for r in retention.rules]
    if retention.max_age is not None:
        out.append(Policy(retention.max_age))
    return out


def _as_list(value) -> list:
    return [value] if isinstance(value, str) else list(value)


# batches ----------------------------------------------------------------------------------
@contextmanager
def _transaction(engine: Engine):
    """One short write transaction; on SQLite it takes the write lock before reading."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        yield conn
        conn.commit()


def _loop(engine, batch, report, batch_size, max_batches, pause, should_stop) -> None:
    """Run ``batch(conn, cursor, report) -> (selected, cursor)`` until it selects fewer than
    ``batch_size`` rows, ``max_batches`` ran or ``should_stop()``; counts into report."""
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be 1 to {MAX_BATCH_SIZE}, got {batch_size}")
    cursor = None
    while True:
        if (max_batches is not None and report.batches >= max_batches) or (
            should_stop is not None and should_stop()
        ):
            report.complete = False
            return
        with _transaction(engine) as conn:
            selected, cursor = batch(conn, cursor, report)
        if selected:
            report.batches += 1
        if selected < batch_size:
            return
        if pause:
            time.sleep(pause)


def _after(cursor, at_col, id_col):
    """Keyset condition: rows after ``cursor`` = (at, id) in (at, id) order. The plain
    ``at >= `` term lets the planner use the index on ``at`` alone."""
    at, last = cursor
    return and_(at_col >= at, or_(at_col > at, id_col > last))


def _open(message_id):
    return exists().where(d.message_id == message_id, d.status.in_(OPEN_STATES))


# pruning ----------------------------------------------------------------------------------
def prune(
    engine: Engine,
    policy: Policy,
    now: float,
    batch_size: int = 500,
    max_batches: int | None = None,
    pause: float | None = None,
    should_stop: StopCheck | None = None,
) -> PruneReport:
    """Delete what ``policy`` says is old, in batches of one transaction each.

    ``max_batches`` bounds the work of one call (messages, then files rows); ``pause``
    seconds between batches; ``should_stop`` is asked before each batch (shutdown)."""
    started = time.perf_counter()
    report = PruneReport()
    cutoff = now - policy.max_age
    pg = engine.dialect.name != "sqlite"

    def message_batch(conn, cursor, report: PruneReport):
        q = select(m.id, m.received_at).where(m.received_at < cutoff)
        if policy.statuses is not None:
            q = q.where(m.status.in_(policy.statuses))
        if policy.keep_open_deliveries:
            q = q.where(~_open(m.id))
        if cursor is not None:
            q = q.where(_after(cursor, m.received_at, m.id))
        q = q.order_by(m.received_at, m.id).limit(batch_size)
        if pg:
            q = q.with_for_update(of=messages, skip_locked=True)
        rows = conn.execute(q).all()
        if not rows:
            return 0, cursor
        ids = [r.id for r in rows]
        if policy.keep_open_deliveries:  # again, on locked rows (PostgreSQL; SQLite holds
            # the write lock already, so this finds nothing new there)
            locked = conn.execute(
                select(d.message_id, d.status)
                .where(d.message_id.in_(ids))
                .order_by(d.id)
                .with_for_update()
            ).all()
            busy = {mid for mid, status in locked if status in OPEN_STATES}
            ids = [i for i in ids if i not in busy]
        if ids:
            report.channel_runs += conn.execute(
                delete(channel_runs).where(channel_runs.c.message_id.in_(ids))
            ).rowcount
            report.deliveries += conn.execute(
                delete(deliveries).where(d.message_id.in_(ids))
            ).rowcount
            report.messages += conn.execute(delete(messages).where(m.id.in_(ids))).rowcount
        return len(rows), (rows[-1].received_at, rows[-1].id)

    def file_batch(conn, cursor, report: PruneReport):
        f = files.c
        q = select(f.id).where(f.processed_at < cutoff)
        if cursor is not None:
            q = q.where(f.id > cursor)
        ids = list(conn.execute(q.order_by(f.id).limit(batch_size)).scalars())
        if ids:
            report.files += conn.execute(delete(files).where(f.id.in_(ids))).rowcount
        return len(ids), ids[-1] if ids else cursor

    _loop(engine, message_batch, report, batch_size, max_batches, pause, should_stop)
    if policy.statuses is None and report.complete:
        _loop(engine, file_batch, report, batch_size, max_batches, pause, should_stop)
    report.seconds = time.perf_counter() - started
    return report


# storage modes ----------------------------------------------------------------------------
def message_mode(routes: str | None, modes: Mapping[str, str | None], default: str) -> str:
    """The mode of a message routed to ``routes`` (comma-separated channel names): the one
    that keeps the most among its channels; ``default`` for no route or an unknown channel."""
    names = [n for n in (routes or "").split(",") if n]
    if not names:
        return default
    return max((modes.get(n) or default for n in names), key=_KEEPS.__getitem__)


def storage_mode_rows(
    mode: str, row: dict, runs: list[dict], deliveries: list[dict]
) -> tuple[dict, list[dict], list[dict]]:
    """What intake stores of a message under ``mode`` (pure; returns new objects only where
    something changed). Only metadata_only drops anything this early: ``raw`` of a message
    with nothing to deliver. The rest waits for delivery (compact_delivered, strip_raw)."""
    if mode not in _KEEPS:
        raise ValueError(f"unknown storage mode {mode!r}; one of {STORAGE_MODES}")
    if mode == METADATA_ONLY and not deliveries and row.get("raw"):
        row = {**row, "raw": b""}
    return row, runs, deliveries


def compact_delivered(
    engine: Engine,
    before: float,
    batch_size: int = 500,
    *,
    modes: Mapping[str, str | None] | None = None,
    default: str = RAW_AND_FINAL,
    max_batches: int | None = None,
    pause: float | None = None,
    should_stop: StopCheck | None = None,
) -> CompactReport:
    """Empty the payload of deliveries delivered before ``before`` (Unix time).

    Without ``modes`` every channel's; with them (channel -> mode, None: ``default``) only
    those of channels not in ``everything`` mode. Other states keep their payload."""
    started = time.perf_counter()
    report = CompactReport()
    base = [d.status == DELIVERED, d.delivered_at < before, func.length(d.payload) > 0]
    if modes is not None:
        kept = sorted(n for n, mode in modes.items() if (mode or default) == EVERYTHING)
        emptied = sorted(n for n, mode in modes.items() if (mode or default) != EVERYTHING)
        if default == EVERYTHING:
            if not emptied:
                return report
            base.append(d.channel.in_(emptied))
        elif kept:
            base.append(d.channel.not_in(kept))

    def batch(conn, cursor, report: CompactReport):
        q = select(d.id).where(*base)
        if cursor is not None:
            q = q.where(d.id > cursor)
        ids = list(conn.execute(q.order_by(d.id).limit(batch_size)).scalars())
        if ids:
            report.rows += conn.execute(
                update(deliveries).where(d.id.in_(ids), d.status == DELIVERED).values(payload=b"")
            ).rowcount
        return len(ids), ids[-1] if ids else cursor

    _loop(engine, batch, report, batch_size, max_batches, pause, should_stop)
    report.seconds = time.perf_counter() - started
    return report


def strip_raw(
    engine: Engine,
    before: float,
    batch_size: int = 500,
    *,
    modes: Mapping[str, str | None] | None = None,
    default: str = METADATA_ONLY,
    max_batches: int | None = None,
    pause: float | None = None,
    should_stop: StopCheck | None = None,
) -> CompactReport:
    """Empty ``raw`` of messages received before ``before`` with no open delivery left.

    Without ``modes`` every such message's; with them, only those whose mode
    (:func:`message_mode`) is metadata_only."""
    started = time.perf_counter()
    report = CompactReport()
    if modes is not None and METADATA_ONLY not in {default, *modes.values()}:
        return report

    def batch(conn, cursor, report: CompactReport):
        q = select(m.id, m.received_at, m.routes).where(
            m.received_at < before, func.length(m.raw) > 0, ~_open(m.id)
        )
        if cursor is not None:
            q = q.where(_after(cursor, m.received_at, m.id))
        rows = conn.execute(q.order_by(m.received_at, m.id).limit(batch_size)).all()
        if not rows:
            return 0, cursor
        ids = [
            r.id
            for r in rows
            if modes is None or message_mode(r.routes, modes, default) == METADATA_ONLY
        ]
        if ids:  # the open check again in the statement: a replay may have come in between
            report.rows += conn.execute(
                update(messages).where(m.id.in_(ids), ~_open(m.id)).values(raw=b"")
            ).rowcount
        return len(rows), (rows[-1].received_at, rows[-1].id)

    _loop(engine, batch, report, batch_size, max_batches, pause, should_stop)
    report.seconds = time.perf_counter() - started
    return report


# one pass, and the engine's periodic task ---------------------------------------------------
def retention_pass(
    engine: Engine,
    now: float,
    *,
    policies: Iterable[Policy] = (),
    modes: Mapping[str, str | None] | None = None,
    default_mode: str = EVERYTHING,
    compact_after: float = 3600.0,
    batch_size: int = 500,
    max_batches: int | None = None,
    pause: float | None = None,
    should_stop: StopCheck | None = None,
) -> RetentionReport:
    """Prune by each policy, then empty what the storage modes drop (delivered payloads and
    raw messages older than ``compact_after``). ``max_batches`` applies to each step."""
    opts = {"max_batches": max_batches, "pause": pause, "should_stop": should_stop}
    report = RetentionReport()
    for policy in policies:
        report.pruned += prune(engine, policy, now, batch_size, **opts)
    modes = modes or {}
    before = now - compact_after
    report.compacted = compact_delivered(
        engine, before, batch_size, modes=modes, default=default_mode, **opts
    )
    report.stripped = strip_raw(
        engine, before, batch_size, modes=modes, default=default_mode, **opts
    )
    return report


class RetentionService(Service):
    """Runs :func:`retention_pass` every ``retention.interval`` in the reactor's thread pool,
    one pass at a time; stopping ends the running pass after its current batch.

    ``store_options`` are the validated settings; ``modes()`` gives the channels' storage
    modes now (they change on reload), e.g.
    ``lambda: {n: c.storage for n, c in self.config.channels.items()}``;
    ``on_report(report)`` is called on the reactor thread after each pass (metrics)."""

    name = "retention"

    def __init__(self, engine: Engine, reactor, store_options,
                 modes: Callable[[], Mapping[str, str | None]],
                 on_report: Callable[[RetentionReport], None] | None = None):  # fmt: skip
        options = store_options.retention
        self.engine = engine
        self.reactor = reactor
        self.modes = modes
        self.on_report = on_report
        self.policies = policies_from_options(options)
        self.default_mode = store_options.storage
        self.interval = float(options.interval)
        self.settings = {
            "compact_after": float(options.compact_after),
            "batch_size": int(options.batch_size),
            "max_batches": options.max_batches,
            "pause": options.pause,
        }
        self._loop = LoopingCall(self.run_once)
        self._loop.clock = reactor
        self._running: Deferred | None = None
        self._stopping = False

    def startService(self) -> None:
        super().startService()
        self._stopping = False
        self._loop.start(self.interval, now=False)

    def stopService(self):
        super().stopService()
        self._stopping = True
        if self._loop.running:
            self._loop.stop()
        return self._running

    def run_once(self) -> Deferred:
        """One pass now (skipped while one runs); fires with its report, or None."""
        if self._running is not None:
            return self._running
        modes = dict(self.modes())
        d = deferToThreadPool(
            self.reactor, self.reactor.getThreadPool(), retention_pass, self.engine,
            self.reactor.seconds(), policies=self.policies, modes=modes,
            default_mode=self.default_mode, should_stop=lambda: self._stopping, **self.settings,
        )  # fmt: skip
        self._running = d

        def done(report: RetentionReport):
            self._running = None
            if report.changed or not report.pruned.complete:
                p = report.pruned
                log.info("retention pass", messages=p.messages, deliveries=p.deliveries,
                         channel_runs=p.channel_runs, files=p.files,
                         payloads_emptied=report.compacted.rows, raw_emptied=report.stripped.rows,
                         complete=p.complete and report.compacted.complete
                         and report.stripped.complete)  # fmt: skip
            if self.on_report is not None:
                self.on_report(report)
            return report

        def failed(f):
            self._running = None
            log.error("retention pass failed; the next one tries again",
                      error=f.getErrorMessage()[:300])  # fmt: skip

        return d.addCallbacks(done, failed)
