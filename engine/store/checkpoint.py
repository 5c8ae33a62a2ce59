"""WAL checkpoints on a thread of their own, so group commits do not wait for them (SQLite).

In WAL mode every commit appends pages to the write-ahead log, and a checkpoint copies them
back into the database file and fsyncs it. By default SQLite runs that checkpoint inside the
commit that takes the log past 1,000 pages: the whole batch, and every message queued behind
it, waits for the copy and the fsync (3-8 ms here; at 8x8 the benchmark's p99 was those
commits, 8.1-8.5 ms against 4.7-4.8 ms with no checkpoint during the run).

Here the store writer tells a :class:`WalCheckpointer` how many rows it committed, and every
``every_rows`` rows the checkpointer runs a PASSIVE checkpoint on its own connection while
the writer goes on (SQLite does the copy and the fsync with the GIL released). The log can
only start again from its beginning when a checkpoint has caught up with it before a write,
which under steady load happens in a commit of the writer's own: the engine's connections
checkpoint on commit from :data:`WAL_LIMIT_PAGES` pages, with little left to copy by then.
"""

from __future__ import annotations

import threading

from engine.logging import get_logger

log = get_logger("store")

# wal_autocheckpoint of every connection when the checkpointer runs: the log's bound (40 MB
# with 4 KB pages) and, under steady load, how often a commit restarts it.
WAL_LIMIT_PAGES = 10_000


class WalCheckpointer:
    """A thread with its own connection that checkpoints the WAL every ``every_rows``
    rows the writer reports."""

    def __init__(self, engine, every_rows: int):
        self.engine = engine
        self.every_rows = every_rows
        self.passes = 0  # checkpoints run
        self.last: tuple | None = None  # (busy, log frames, checkpointed frames) of the last
        self._rows = 0
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="store-checkpoint", daemon=True)
        self._thread.start()

    def written(self, rows: int) -> None:
        """Rows just committed (called by whoever holds the writer's connection)."""
        self._rows += rows
        if self._rows >= self.every_rows:
            self._rows = 0
            self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """End the thread after the checkpoint in progress, if any."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        conn = self.engine.raw_connection()  # WAL, synchronous and busy timeout as any other
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stopping:
                    break
                self._checkpoint(conn)
        finally:
            conn.close()

    def _checkpoint(self, conn) -> None:
        cur = conn.cursor()
        try:
            # PASSIVE never waits for a lock and never blocks the writer; whatever it
            # cannot copy now is copied by the next one.
            self.last = tuple(cur.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone())
            self.passes += 1
        except Exception as exc:  # the next pass, or a commit at the limit, tries again
            log.warning("WAL checkpoint failed", error=type(exc).__name__)
            log.debug("WAL checkpoint failure", exc_info=True)
        finally:
            cur.close()
