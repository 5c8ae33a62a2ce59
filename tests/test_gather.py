"""When a group commit closes (engine/store/gather.py), on a task.Clock: no sleeps, no speed."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from engine.store.gather import RECENT_SECONDS, Gatherer

BUDGET = 0.001
STEP = 0.00005  # one sender's next write every 50 µs, each in a reactor pass of its own


class Writer:
    """What the store writer gives the gatherer: a dispatch that records each closed batch."""

    def __init__(self, budget: float = BUDGET, max_rows: int = 100, busy: bool = False):
        self.clock = Clock()
        self.busy = busy
        self.batches: list[tuple[float, list, bool]] = []  # (time, writes, alone)
        self.g = Gatherer(self.clock, self.dispatch, lambda: self.busy, budget=budget,
                          max_rows=max_rows)  # fmt: skip

    def dispatch(self, batch: list, alone: bool) -> None:
        self.batches.append((self.clock.seconds(), batch, alone))

    def write(self, name: str, size: int = 1, sender: bool = True) -> None:
        """A write read in a reactor pass of its own: added, then the pass ends."""
        self.g.add(name, size, sender)
        self.clock.advance(0)

    def answer(self, senders: int) -> None:
        self.g.answered(senders)


def test_a_lone_write_is_not_delayed():
    w = Writer()
    w.write("a")
    assert w.batches == [(0.0, ["a"], True)]
    # Its ACK gives one credit; the sender's next write takes it back and is not held.
    w.answer(1)
    w.clock.advance(0.0003)
    w.write("b")
    assert w.batches[-1] == (0.0003, ["b"], True)
    assert w.clock.getDelayedCalls() == [] and w.g.holds == 0


def test_nothing_closes_before_the_end_of_the_pass():
    w = Writer()
    w.g.add("a", 1)
    w.g.add("b", 1)  # read in the same pass
    assert w.batches == []
    w.clock.advance(0)
    assert w.batches == [(0.0, ["a", "b"], True)]


def test_concurrent_single_writes_of_n_senders_share_one_batch():
    """Eight senders, each waiting for its ACK: their next writes come back one per pass,
    50 µs apart, and make one batch that closes as soon as the last one is in."""
    w = Writer()
    for round_ in range(3):
        w.answer(8)  # the last commit answered all eight
        start = w.clock.seconds()
        for i in range(8):
            w.clock.advance(STEP)
            w.write(f"r{round_}s{i}")
        assert len(w.batches) == round_ + 1
        at, batch, alone = w.batches[-1]
        assert batch == [f"r{round_}s{i}" for i in range(8)] and alone
        assert at == pytest.approx(start + 8 * STEP)  # no wait for the budget
    assert w.g.holds == 3 and w.g.held_to_budget == 0


def test_the_hold_is_bounded_by_the_budget():
    w = Writer()
    w.answer(8)
    w.clock.advance(STEP)
    first = w.clock.seconds()
    for name in ("a", "b", "c"):  # five of the eight senders do not write again soon
        w.write(name)
        w.clock.advance(STEP)
    w.clock.advance(first + BUDGET - w.clock.seconds() - 1e-6)
    assert w.batches == []  # still within the budget
    w.clock.advance(1e-6)
    # Not alone: the late ones may write while it commits (on the writer thread).
    assert w.batches == [(pytest.approx(first + BUDGET), ["a", "b", "c"], False)]
    assert w.g.held_to_budget == 1
    # The five are not waited for again: the next write closes at the end of its pass.
    w.clock.advance(STEP)
    w.write("d")
    assert w.batches[-1][1:] == (["d"], True)


def test_no_hold_while_the_writer_thread_is_busy():
    """A batch cannot start before the thread is free, which then takes all handed over."""
    w = Writer(busy=True)
    w.answer(8)
    w.write("a")
    w.write("b")
    assert [b for _, b, _ in w.batches] == [["a"], ["b"]]
    assert not any(alone for _, _, alone in w.batches)  # six senders are still expected
    assert w.g.holds == 0


def test_credits_lapse_so_a_quiet_sender_delays_no_one():
    w = Writer()
    w.answer(4)
    w.clock.advance(RECENT_SECONDS)
    w.write("late")
    assert w.batches == [(RECENT_SECONDS, ["late"], True)]


def test_steady_answers_do_not_keep_a_closed_connection_expected():
    """Sender B goes away while A keeps writing: B's credit lapses on its own timetable, not
    renewed by the answers A gets."""
    w = Writer(busy=True)  # under load: no holds, so no budget runs out and clears credits
    w.answer(2)  # senders A and B
    while w.clock.seconds() < 2 * RECENT_SECONDS:
        w.clock.advance(0.0005)
        w.write("A")
        w.answer(1)
    w.busy = False
    w.clock.advance(0.0005)
    w.write("A")
    assert w.batches[-1][1:] == (["A"], True)  # closed at the end of its pass
    assert w.g.holds == 0


def test_max_rows_closes_the_batch_at_once():
    w = Writer(max_rows=3)
    w.answer(10)
    w.g.add("a", 1)
    w.g.add("b", 2)
    assert w.batches == [(0.0, ["a", "b"], False)]  # within the pass: never inline
    w.clock.advance(0)
    assert len(w.batches) == 1


def test_writes_without_rows_take_no_credit():
    """Delivery outcomes (execute) join the batch but are not a sender coming back."""
    w = Writer()
    w.answer(1)
    w.write("outcomes", size=5, sender=False)
    assert w.batches == []  # the sender is still expected
    w.clock.advance(STEP)
    w.write("message")
    assert w.batches == [(STEP, ["outcomes", "message"], True)]


def test_flush_hands_over_what_is_held():
    w = Writer()
    w.answer(3)
    w.write("a")
    w.g.flush()
    assert w.batches == [(0.0, ["a"], False)]
    w.clock.advance(BUDGET)  # the hold's timer was cancelled
    assert len(w.batches) == 1 and w.g.waiting == 0


def test_zero_budget_never_holds():
    w = Writer(budget=0.0)
    w.answer(8)
    w.write("a")
    assert w.batches == [(0.0, ["a"], False)]  # not alone: seven senders are expected
    assert w.g.holds == 0 and w.clock.getDelayedCalls() == []


def test_a_pass_longer_than_the_budget_closes_the_batch_at_its_end():
    w = Writer()
    w.answer(8)
    w.g.add("a", 1)
    w.clock.advance(2 * BUDGET)  # the reactor was busy that long (reading, committing)
    assert w.batches == [(2 * BUDGET, ["a"], False)]
    w.write("b")  # the seven late ones are not waited for
    assert w.batches[-1] == (2 * BUDGET, ["b"], True)
