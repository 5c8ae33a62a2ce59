"""Group commit on a dedicated writer thread.

SQLite allows one writer. Writes are gathered on the reactor thread (engine/store/gather.py:
a batch closes at the end of a reactor pass, or, while senders just answered are expected
back, when they have written or a small time budget has run out). The thread takes every
batch handed over while the previous commit ran and writes them in one transaction. Results
go back to the reactor thread with one ``callFromThread`` per batch, and only then is any ACK
written: the ACK follows its commit. On SQLite a small batch that closes with nothing else in
flight commits on the reactor thread instead (see :meth:`StoreWriter._commit_inline`).

Duplicate detection lives here too, in the same transaction and in arrival order, so it holds
for messages still in flight and across restarts.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, update
from sqlalchemy.engine import Engine
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from engine.logging import get_logger
from engine.store import dedup
from engine.store.db import BUSY_TIMEOUT_MS
from engine.store.gather import Gatherer
from engine.store.schema import files, messages
from engine.store.statements import Statements

_STOP = object()
log = get_logger("store")
_KEY_CHUNK = 500
# The most rows committed on the reactor thread at once: a commit of 32 rows takes about a
# millisecond here, during which the event loop reads nothing (bench/README.md).
INLINE_MAX_ROWS = 32
# How long a batch may wait for senders just answered to write again, by default.
GATHER_SECONDS = 0.002


@dataclass(slots=True)
class RowResult:
    """Outcome of one message row: its id, and for a duplicate the first message's id and ACK.

    ``reprocess_of``: stored as a retry of that errored or rejected message. ``conflict_with``:
    the message that came first with this MSH-10 and sender but another body; the row was
    answered as its duplicate (``duplicate_of`` set) or stored, with ``changes`` applied when
    its conflict policy gave any (engine.store.dedup)."""

    id: int
    duplicate_of: int | None = None
    ack: bytes | None = None
    reprocess_of: int | None = None
    conflict_with: int | None = None
    changes: dict | None = None


@dataclass(slots=True)
class WriteRequest:
    rows: list[dict]
    windows: Sequence[float]  # duplicate window per row, seconds (0: no check)
    file: dict | None
    done: Deferred | Callable  # fired (Deferred) or called with the outcome or a Failure
    ops: Sequence[tuple] = ()  # (statement, parameter dicts): delivery outcomes and the like


class StoreWriter:
    """Owns the store's only writing connection, on its own thread."""

    def __init__(
        self,
        engine: Engine,
        reactor,
        *,
        max_batch: int = 2000,
        observer=None,
        inline=True,
        checkpointer=None,
        gather_seconds: float = GATHER_SECONDS,
        clock=None,
    ):
        self.engine = engine
        self.reactor = reactor
        self.max_batch = max_batch
        self.observer = observer  # callable(batch_rows: int, commit_seconds: float)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()  # lists of requests, or _STOP
        self._thread: threading.Thread | None = None
        self._stopped: Deferred | None = None
        self.pending = 0  # requests submitted and not yet answered
        self._in_thread = 0  # of those, handed to the thread (reactor side)
        self._sql: Statements | None = None
        self._busy_retry = engine.dialect.name == "sqlite"  # see _write_batch
        self._inline_ok = inline and self._busy_retry  # see _commit_inline
        self._idle = False  # the thread waits for work, with self._conn open
        self._conn = None
        self._lock = threading.Lock()  # one user of the connection at a time
        self.inline_commits = 0
        self.checkpointer = checkpointer  # engine.store.checkpoint.WalCheckpointer or None
        self.gather = Gatherer(
            clock or reactor,
            self._dispatch,
            lambda: self._in_thread > 0,
            budget=gather_seconds,
            max_rows=max_batch,
        )

    # reactor side ----------------------------------------------------------------------
    def start(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.start()
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    def submit(
        self, rows: list[dict], windows: Sequence[float] | None = None, file: dict | None = None
    ) -> Deferred:
        """Queue rows (and an optional file record) for one atomic write.

        Fires with a list of :class:`RowResult` (and the file id first when ``file`` is given)
        after the commit, or fails with the database error.
        """
        d = Deferred()
        self.submit_then(rows, windows, d, file)
        return d

    def submit_then(
        self,
        rows: list[dict],
        windows: Sequence[float] | None,
        done: Callable,
        file: dict | None = None,
    ) -> None:
        """:meth:`submit` with a plain callback: ``done(outcome)`` on the reactor thread after
        the commit, ``outcome`` being the result list or a Failure. The MLLP hot path uses
        this: a Deferred chain per message cost a tenth of intake's CPU (bench/, cProfile)."""
        if self._stopped is not None:
            raise RuntimeError("store writer is stopping")
        self.pending += 1
        req = WriteRequest(rows, windows or [0.0] * len(rows), file, done)
        self.gather.add(req, len(rows), bool(rows))

    def _dispatch(self, batch: list[WriteRequest], alone: bool) -> None:
        """A batch the gatherer closed: inline when that is worth it, else to the thread."""
        if alone and not self._in_thread and self._inline_ok and self._idle and _fits_inline(batch):
            self._commit_inline(batch)
        else:
            self._to_thread(batch)

    def _to_thread(self, batch: list[WriteRequest]) -> None:
        self._in_thread += len(batch)
        self._queue.put(batch)

    def _commit_inline(self, batch: list[WriteRequest]) -> None:
        """Commit a small batch on the reactor thread, sparing two thread hand-offs and the
        GIL's back and forth between the threads. Only when nothing else is in flight, so
        the event loop has nothing else to do meanwhile: a lone message (bench/mllp_intake.py
        at 1 connection, same machine and day: 1,453 -> 1,739 msg/s, 519 -> 423 µs CPU per
        message), or the messages of senders that each wait for their ACK (8x1: see
        bench/README.md). Under load a batch closes while the thread is busy and goes to
        it, and its group commits overlap the reactor's work. SQLite only: a commit there
        takes well under a millisecond; a PostgreSQL round trip would stall the reactor."""
        if not self._lock.acquire(blocking=False):
            self._to_thread(batch)
            return
        try:
            # Never wait here for another connection's write lock (prune, an operator's
            # action): the event loop would stall. Busy, or any other failure, and the
            # write goes to the thread, which waits for the lock and reports errors.
            outcomes = self._write_batch(self._conn, batch, wait=False)
        except Exception:
            outcomes = [Failure() for _ in batch]
        finally:
            self._lock.release()
        if not any(isinstance(out, Failure) for out in outcomes):
            self.inline_commits += 1
            self._finish(batch, outcomes, inline=True)
            return
        # Not committed (the lock was busy, or a request is bad): the thread tries those again.
        pairs = list(zip(batch, outcomes, strict=True))
        self._to_thread([req for req, out in pairs if isinstance(out, Failure)])
        done = [(req, out) for req, out in pairs if not isinstance(out, Failure)]
        if done:
            self.inline_commits += 1
            self._finish([req for req, _ in done], [out for _, out in done], inline=True)

    def execute(self, ops: Sequence[tuple]) -> Deferred:
        """Run statements (each with a list of parameter dicts) in the next group commit, in
        order with everything else queued. Fires after the commit."""
        if self._stopped is not None:
            raise RuntimeError("store writer is stopping")
        d = Deferred()
        self.pending += 1
        req = WriteRequest([], [], None, d, ops=ops)
        self.gather.add(req, _size(req), sender=False)
        return d

    def stop(self) -> Deferred:
        """Write everything already queued, then end the thread and dispose of the engine."""
        if self._stopped is None:
            self._stopped = Deferred()
            if self._thread is None:
                self.engine.dispose()
                self._stopped.callback(None)
            else:
                self.gather.flush()
                self._queue.put(_STOP)
        return self._stopped

    def _finish(self, batch: list[WriteRequest], outcomes: list, inline: bool = False) -> None:
        if not inline:
            self._in_thread -= len(batch)
        senders = 0  # requests with rows: senders that may write again now
        for req in batch:
            if req.rows:
                senders += 1
        self.gather.answered(senders)
        for req, outcome in zip(batch, outcomes, strict=True):
            self.pending -= 1
            done = req.done
            if type(done) is not Deferred:
                try:
                    done(outcome)
                except Exception as exc:  # one caller's bug must not strand the batch
                    log.error("store write callback failed", error=type(exc).__name__)
                    log.debug("store write callback failure", exc_info=True)
            elif isinstance(outcome, Failure):
                done.errback(outcome)
            else:
                done.callback(outcome)

    def _ended(self) -> None:
        self.engine.dispose()
        self._stopped.callback(None)

    # writer thread ---------------------------------------------------------------------
    def _run(self) -> None:
        conn = self.engine.connect()
        if self._busy_retry:  # SQLite: this connection never sleeps in the busy handler
            conn.connection.dbapi_connection.execute("PRAGMA busy_timeout=0")
        try:
            self._conn = conn
            carry: list[WriteRequest] = []  # what did not fit in the last batch
            stop = False
            while carry or not stop:
                if carry:
                    item = carry
                else:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        self._idle = self._inline_ok
                        item = self._queue.get()
                        self._idle = False
                    if item is _STOP:
                        break
                batch, carry, stopped = self._take_queued(item)
                stop = stop or stopped
                with self._lock:
                    outcomes = self._write_batch(conn, batch)
                self.reactor.callFromThread(self._finish, batch, outcomes)
        finally:
            if self.checkpointer is not None:
                self.checkpointer.stop()
            conn.close()
            self.reactor.callFromThread(self._ended)

    def _take_queued(self, item: list[WriteRequest]) -> tuple[list, list, bool]:
        """The next commit: ``item`` and every batch handed over behind it, up to max_batch
        rows. Returns it, what did not fit (first in the commit after), and whether the
        stop sentinel came."""
        batch: list[WriteRequest] = []
        nrows = 0
        while True:
            for i, req in enumerate(item):
                if batch and nrows >= self.max_batch:
                    return batch, item[i:], False
                batch.append(req)
                nrows += _size(req)
            if nrows >= self.max_batch:
                return batch, [], False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch, [], False
            if item is _STOP:
                return batch, [], True

    def _write_batch(self, conn, batch: list[WriteRequest], wait: bool = True) -> list:
        started = time.perf_counter()
        deadline = None
        while True:
            try:
                with conn.begin():
                    outcomes = self._write(conn, batch)
            except Exception as exc:
                busy = self._busy_retry and _is_busy(exc)
                if wait and busy:
                    # Another connection holds SQLite's write lock (prune, an operator's
                    # action). Retry every millisecond rather than in SQLite's busy handler,
                    # whose sleeps grow to 100 ms and miss the pauses prune leaves between
                    # its batches; give up after the busy timeout, as SQLite would.
                    deadline = deadline or time.monotonic() + BUSY_TIMEOUT_MS / 1000
                    if time.monotonic() < deadline:
                        time.sleep(0.001)
                        continue
                if len(batch) == 1 or busy:  # busy and not waiting: each alone would be too
                    return [Failure() for _ in batch]
                # One bad request must not sink the others: write each on its own.
                return [self._write_batch(conn, [req], wait)[0] for req in batch]
            break
        rows = sum(len(r.rows) for r in batch)
        if self.observer is not None:
            self.observer(rows, time.perf_counter() - started)
        if self.checkpointer is not None:
            self.checkpointer.written(rows)
        return outcomes

    def _write(self, conn, batch: list[WriteRequest]) -> list:
        sql = self._sql or Statements(conn)
        self._sql = sql
        # The hot statements go straight to the driver's cursor, inside the transaction
        # conn.begin() opened: SQLAlchemy's per-statement result set-up cost more than
        # SQLite's own work on a batch of one (bench/mllp_intake.py at 1x1, cProfile).
        # Closed on the way out even on error: a failed statement kept alive (by the
        # traceback of a Failure) held SQLite's read snapshot, and the next write on this
        # connection could not take the write lock (a 30 s wait, then an error).
        cur = conn.connection.dbapi_connection.cursor()
        try:
            return self._write_with(conn, cur, sql, batch)
        finally:
            cur.close()

    def _write_with(self, conn, cur, sql: Statements, batch: list[WriteRequest]) -> list:
        known = self._existing(cur, sql, batch)
        seen: dict[str, list[int]] = {}  # dedup_key -> indexes of this batch's inserts
        inserts: list[dict] = []
        # per request: per row the index of its insert (new), or (verdict, insert index or
        # None, candidate, changes) for a row that follows an earlier one (engine.store.dedup)
        plan: list[list] = []
        dup_ids: list[int] = []
        for req in batch:
            file_id = None
            if req.file is not None:
                file_id = conn.execute(files.insert().returning(files.c.id), req.file).scalar_one()
            steps: list = [file_id]
            for row, window in zip(req.rows, req.windows, strict=True):
                key = row.get("dedup_key")
                if file_id is not None:
                    row["source_file"] = file_id
                step = len(inserts)
                if key and window > 0 and (key in known or key in seen):
                    earlier = known.get(key, []) + [
                        dedup.from_row(i, inserts[i]) for i in seen.get(key, ())
                    ]
                    verdict, hit = dedup.classify(earlier, row, window)
                    changes = None
                    if verdict == dedup.CONFLICT:
                        policy = row.get("_on_conflict")
                        changes = policy(row) if policy is not None else None
                        if changes is None:  # ack_first: as a duplicate, flagged
                            steps.append((verdict, None, hit, None))
                            continue
                    elif verdict == dedup.DUPLICATE:  # answered with the first message's ACK
                        steps.append((verdict, None, hit, None))
                        continue
                    if verdict != dedup.NEW:  # stored, linked to the row it follows
                        link = "reprocess_of" if verdict == dedup.RETRY else "conflicts_with"
                        row = {**row, **(changes or {}), link: hit.ref if hit.stored else None}
                        step = (verdict, step, hit, changes)
                if key:
                    seen.setdefault(key, []).append(len(inserts))
                steps.append(step)
                inserts.append(row)
            plan.append(steps)
        ids = sql.insert(cur, inserts) if inserts else []
        if inserts:
            sql.insert_children(cur, inserts)
        outcomes = []
        late: dict[str, list[dict]] = {}  # links to rows of this batch, known once inserted
        for req, steps in zip(batch, plan, strict=True):
            results: list = [] if req.file is None else [steps[0]]
            for step in steps[1:]:
                if step.__class__ is int:  # new
                    results.append(RowResult(ids[step]))
                    continue
                verdict, index, hit, changes = step
                first = hit.ref if hit.stored else ids[hit.ref]
                if index is None:  # answered with the first message's ACK
                    dup_ids.append(first)
                    conflict = first if verdict == dedup.CONFLICT else None
                    results.append(RowResult(first, first, hit.ack, conflict_with=conflict))
                    continue
                result = RowResult(ids[index])
                if verdict == dedup.RETRY:
                    result.reprocess_of = first
                elif verdict == dedup.CONFLICT:
                    result.conflict_with, result.changes = first, changes
                if not hit.stored:
                    link = "reprocess_of" if verdict == dedup.RETRY else "conflicts_with"
                    late.setdefault(link, []).append({"mid": ids[index], "to": first})
                results.append(result)
            outcomes.append(results)
        self._run_ops(cur, sql, batch)
        if dup_ids:
            conn.execute(
                update(messages)
                .where(messages.c.id == bindparam("mid"))
                .values(duplicates=messages.c.duplicates + 1),
                [{"mid": i} for i in dup_ids],
            )
        for link, params in late.items():
            conn.execute(
                update(messages).where(messages.c.id == bindparam("mid"))
                .values({link: bindparam("to")}), params,
            )  # fmt: skip
        return outcomes

    def _run_ops(self, cur, sql: Statements, batch: list[WriteRequest]) -> None:
        """Statements queued with execute(): consecutive uses of one statement across the
        batch run as one executemany (delivery outcomes come one per request)."""
        run: list = []
        current = None
        for req in batch:
            for stmt, params in req.ops:
                if not params:
                    continue
                if stmt is not current and run:
                    sql.execute(cur, current, run)
                    run = []
                current = stmt
                run.extend(params)
        if run:
            sql.execute(cur, current, run)

    def _existing(self, cur, sql: Statements, batch: list[WriteRequest]) -> dict[str, list]:
        """Stored rows that share a dedup_key with a row of the batch, oldest first per key.
        Candidates come by control id (its index serves search as well) and only an equal
        dedup_key (sending application, facility and control id) counts."""
        wanted = {
            row["dedup_key"]: row["control_id"]
            for req in batch
            for row, window in zip(req.rows, req.windows, strict=True)
            if window > 0 and row.get("dedup_key")
        }
        cids = list(set(wanted.values()))
        found: dict[str, list] = {}
        for i in range(0, len(cids), _KEY_CHUNK):
            for key, mid, at, ack, status, code, fp in sql.lookup(cur, cids[i : i + _KEY_CHUNK]):
                if key in wanted:  # ordered by id
                    found.setdefault(key, []).append(
                        dedup.Candidate(mid, True, at, ack, status, code, fp)
                    )
        return found


def _is_busy(exc: BaseException) -> bool:
    """SQLite's SQLITE_BUSY or SQLITE_LOCKED (any extended code), raw or wrapped by
    SQLAlchemy."""
    exc = getattr(exc, "orig", None) or exc
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (5, 6)
    return "locked" in str(exc) or "busy" in str(exc)


def _size(req: WriteRequest) -> int:
    n = len(req.rows)
    for _, params in req.ops:
        n += len(params)
    return n


def _fits_inline(batch: list[WriteRequest]) -> bool:
    """Small enough for the event loop to wait for, and no file record (drop folders write
    many rows at once)."""
    n = 0
    for req in batch:
        if req.file is not None:
            return False
        n += _size(req)
    return n <= INLINE_MAX_ROWS
