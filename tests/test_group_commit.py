"""The store writer's batching: gathered group commits, inline commits on SQLite, max_batch.

The gathering runs on a task.Clock handed to the writer; the writer thread answers through the
real reactor, which the helpers below let run (bounded) whenever a batch is at the thread.
Nothing here measures speed.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from sqlalchemy import select
from twisted.internet import reactor, task
from twisted.internet.defer import gatherResults, inlineCallbacks

from engine.store import migrations
from engine.store.db import create_store_engine
from engine.store.schema import messages
from engine.store.writer import _STOP, INLINE_MAX_ROWS, StoreWriter, WriteRequest
from tests.test_store import DAY, row

BUDGET = 0.001
STEP = 0.00001  # the gather clock's step while senders run: 10 µs


def wait_until(condition, what: str, seconds: float = 10.0):
    """Let the real reactor run until ``condition()`` (the writer thread answered)."""
    for _ in range(int(seconds * 1000)):
        if condition():
            return
        yield task.deferLater(reactor, 0.001, lambda: None)
    raise AssertionError(f"timed out waiting for {what}")


def until_idle(writer):
    """Wait until the writer thread sleeps with nothing to do (always, on PostgreSQL)."""
    yield from wait_until(lambda: writer._idle or not writer._inline_ok, "an idle writer thread")


class Gathered:
    """A StoreWriter whose gathering runs on a task.Clock, and what it committed."""

    def __init__(self, store_engine, **kw):
        self.clock = task.Clock()
        self.commits: list[int] = []  # rows per commit, in order
        self.writer = StoreWriter(
            store_engine,
            reactor,
            clock=self.clock,
            gather_seconds=BUDGET,
            observer=lambda rows, _seconds: self.commits.append(rows),
            **kw,
        )
        self.writer.start()

    @inlineCallbacks
    def run_until(self, done, limit: int = 100_000):
        """Advance the clock a step at a time; while a batch is at the thread, wait for it."""
        w = self.writer
        for _ in range(limit):
            self.clock.advance(0)  # the end of the current reactor pass
            if done():
                return
            if w._in_thread:
                yield from wait_until(lambda: not w._in_thread, "the writer thread")
            else:
                self.clock.advance(STEP)
        raise AssertionError("the senders did not finish")


class Senders:
    """Senders that each wait for their answer, then write again ``delay * (i + 1)`` later
    (by the gather clock): the next messages of one commit come back spread out, one per
    reactor pass, as real senders' do."""

    def __init__(self, g: Gathered, n: int, rounds: int, delay: float = 0.00005, quiet=()):
        self.g, self.n, self.rounds, self.delay, self.quiet = g, n, rounds, delay, set(quiet)
        self.sent = [0] * n
        self.written: list[tuple[int, float]] = []  # (sender, clock time) per write
        self.answered: list[tuple[int, float]] = []

    def start(self) -> None:
        for i in range(self.n):  # all in one reactor pass
            self._write(i)

    def _write(self, i: int) -> None:
        self.sent[i] += 1
        self.written.append((i, self.g.clock.seconds()))
        self.g.writer.submit_then([row(f"S{i}.{self.sent[i]}")], [DAY],
                                  lambda outcome, i=i: self._answer(i, outcome))  # fmt: skip

    def _answer(self, i: int, outcome) -> None:
        assert not isinstance(outcome, Exception) and outcome[0].id > 0
        self.answered.append((i, self.g.clock.seconds()))
        if self.sent[i] < self.rounds and not (self.sent[i] > 1 and i in self.quiet):
            self.g.clock.callLater(self.delay * (i + 1), self._write, i)

    def finished(self) -> bool:
        return len(self.answered) == len(self.written) and not self.g.clock.getDelayedCalls()


@inlineCallbacks
def run_senders(store_engine, n: int, rounds: int, quiet=()):
    """``n`` senders write ``rounds`` messages each through a fresh gathered writer."""
    g = Gathered(store_engine)
    yield from until_idle(g.writer)
    senders = Senders(g, n, rounds, quiet=quiet)
    senders.start()
    yield g.run_until(senders.finished)
    return g, senders


@pytest_twisted.inlineCallbacks
def test_senders_that_wait_for_their_ack_share_one_commit(store_engine):
    """Eight connections, one message in flight each: every commit carries all eight."""
    g, _ = yield run_senders(store_engine, 8, rounds=4)
    assert g.commits == [8, 8, 8, 8]
    sqlite = store_engine.dialect.name == "sqlite"
    assert g.writer.inline_commits == (4 if sqlite else 0)  # each time, all there was
    assert g.writer.gather.held_to_budget == 0  # each closed when the eighth came
    yield g.writer.stop()


@pytest_twisted.inlineCallbacks
def test_a_lone_sender_is_not_delayed(store_engine):
    g, senders = yield run_senders(store_engine, 1, rounds=5)
    assert g.commits == [1] * 5
    # Answered at the clock time of its write: no gather timer ran in between.
    assert [t for _, t in senders.answered] == [t for _, t in senders.written]
    assert g.writer.gather.holds == 0
    yield g.writer.stop()


@pytest_twisted.inlineCallbacks
def test_the_wait_for_a_sender_that_went_quiet_is_bounded(store_engine):
    """Sender 7 stops after its second message: the others' batch waits for it no longer
    than the gather budget, once, and then not again."""
    g, senders = yield run_senders(store_engine, 8, rounds=4, quiet={7})
    assert g.commits == [8, 8, 7, 7]
    first_of_third = senders.written[16][1]  # the third round: seven writes
    assert [t for _, t in senders.answered[16:23]] == [pytest.approx(first_of_third + BUDGET)] * 7
    assert g.writer.gather.held_to_budget == 1  # the fourth round closed with its seventh
    yield g.writer.stop()


@pytest_twisted.inlineCallbacks
def test_small_batches_commit_inline_and_large_ones_go_to_the_thread(writer, store_engine):
    sqlite = store_engine.dialect.name == "sqlite"
    yield from until_idle(writer)
    (first,) = yield writer.submit([row("L1")], [DAY])
    assert writer.inline_commits == (1 if sqlite else 0)  # never on PostgreSQL
    yield from until_idle(writer)
    # Three writes in one reactor pass, nothing else in flight: one commit, in order.
    results = yield gatherResults([writer.submit([row(f"L{i}")], [DAY]) for i in (2, 3, 4)])
    assert writer.inline_commits == (2 if sqlite else 0)
    assert [r[0].id for r in results] == [first.id + 1, first.id + 2, first.id + 3]
    yield from until_idle(writer)
    # More rows than the event loop should wait for: the writer thread.
    big = [row(f"B{i}") for i in range(INLINE_MAX_ROWS + 1)]
    results = yield writer.submit(big, [DAY] * len(big))
    assert len(results) == len(big) and writer.inline_commits == (2 if sqlite else 0)
    (dup,) = yield writer.submit([row("L1", at=1001.0)], [DAY])  # inline sees duplicates too
    assert dup.duplicate_of == first.id
    with store_engine.connect() as conn:
        got = list(conn.execute(select(messages.c.control_id).order_by(messages.c.id)).scalars())
    assert got[:4] == ["L1", "L2", "L3", "L4"] and len(got) == 4 + len(big)


@pytest_twisted.inlineCallbacks
def test_a_bad_request_in_an_inline_batch_fails_alone(writer, store_engine):
    """The others commit on the event loop; the bad one is tried again on the writer thread,
    which reports its error."""
    from twisted.internet.defer import DeferredList

    yield from until_idle(writer)
    ds = [writer.submit([row("G1")], [DAY]), writer.submit([row("G2", status=None)], [DAY]),
          writer.submit([row("G3")], [DAY])]  # fmt: skip
    results = yield DeferredList(ds, consumeErrors=True)
    assert [ok for ok, _ in results] == [True, False, True]
    assert "NULL" in str(results[1][1].value).upper()  # the NOT NULL violation, reported
    sqlite = store_engine.dialect.name == "sqlite"
    assert writer.inline_commits == (1 if sqlite else 0) and writer.pending == 0
    with store_engine.connect() as conn:
        got = conn.execute(select(messages.c.control_id).order_by(messages.c.id)).scalars()
        assert list(got) == ["G1", "G3"]


@pytest_twisted.inlineCallbacks
def test_an_inline_batch_never_waits_for_a_lock_on_the_reactor(tmp_path):
    """Another connection holds SQLite's write lock (prune, an operator): the inline attempt
    gives up at once, the thread waits for the lock, and the event loop keeps running."""
    import sqlite3

    path = tmp_path / "store.db"
    store_engine = create_store_engine(f"sqlite:///{path}")
    migrations.upgrade(store_engine)
    writer = StoreWriter(store_engine, reactor)
    writer.start()
    yield from until_idle(writer)
    blocker = sqlite3.connect(path)
    blocker.execute("BEGIN IMMEDIATE")  # holds the write lock, and commits a change
    blocker.execute("INSERT INTO audit_log (at, actor, action) VALUES (1, 'test', 'lock')")
    ticks: list[str] = []
    # No duplicate lookup: the INSERT comes first. Three writes in one pass: one batch.
    ds = [writer.submit([row(f"M{i}")], [0.0]) for i in (1, 2, 3)]
    reactor.callLater(0.05, ticks.append, "tick")
    reactor.callLater(0.2, blocker.commit)  # runs only if the reactor is not stuck
    results = yield gatherResults(ds)
    blocker.close()
    assert ticks == ["tick"] and writer.inline_commits == 0
    assert [r[0].id for r in results] == [results[0][0].id + i for i in range(3)]
    yield from until_idle(writer)
    # The connection is fine after: the three write again, and commit inline.
    after = yield gatherResults([writer.submit([row(f"M{i}")], [DAY]) for i in (4, 5, 6)])
    assert after[0][0].id == results[-1][0].id + 1 and writer.inline_commits == 1
    yield writer.stop()
    store_engine.dispose()


def test_the_thread_takes_what_was_handed_over_up_to_max_batch(store_engine):
    """Batches handed over while a commit ran go into the next one, up to max_batch rows;
    the rest opens the commit after."""
    writer = StoreWriter(store_engine, reactor, max_batch=5)  # not started: no thread

    def reqs(prefix, n, rows=1):
        return [WriteRequest([row(f"{prefix}{i}.{j}") for j in range(rows)], [DAY] * rows,
                             None, None) for i in range(n)]  # fmt: skip

    first, second, third = reqs("A", 1), reqs("B", 3), reqs("C", 4)
    writer._queue.put(second)
    writer._queue.put(third)
    batch, carry, stop = writer._take_queued(first)
    assert batch == first + second + third[:1] and carry == third[1:] and not stop
    batch, carry, stop = writer._take_queued(carry)  # the queue is empty by now
    assert batch == third[1:] and carry == [] and not stop
    big = reqs("D", 1, rows=7)  # a request over max_batch goes whole, and alone
    writer._queue.put(reqs("E", 1))
    batch, carry, stop = writer._take_queued(big)
    assert batch == big and carry == [] and not stop
    e = writer._queue.get_nowait()
    writer._queue.put(_STOP)  # stop() hands over what the gatherer holds, then the sentinel
    batch, carry, stop = writer._take_queued(e)
    assert batch == e and carry == [] and stop
    writer.engine.dispose()
