"""When a group commit closes: wait, briefly, for the senders that are about to write.

Real MLLP senders wait for each ACK before they send their next message. With N of them, the
ACKs of one commit go out together and the N next messages come back over the following few
hundred microseconds, one or two per reactor pass. A writer that starts a commit as soon as
the first of them arrives splits them over several commits, and each commit pays for an
fdatasync and its own fixed CPU (bench/mllp_intake.py at 8x1: 3.9 messages per commit for 8
senders; see bench/README.md).

:class:`Gatherer` runs on the reactor thread. It decides when the writes submitted so far
become one batch:

- never before the end of the reactor pass that brought them (``callLater(0)``): whatever one
  pass reads goes together;
- at the end of that pass when the writer thread is busy: no commit can start before it is
  free, and it then takes everything handed to it in the meantime;
- otherwise it holds the batch while senders answered in the last few milliseconds have not
  written again: each answer is a credit, which the next write takes back. The hold ends
  when the credits are used up, ``budget`` seconds after the batch's first write, or at
  ``max_rows`` rows. A credit lapses :data:`RECENT_SECONDS` after the answer that gave it (or
  ``budget``, if longer), so a sender that went quiet or closed its connection delays no one
  after that.

A lone sender is never held: its next write takes back the one credit its last ACK gave, and
its batch closes at the end of that pass. No write waits more than ``budget`` because of the
gathering. A batch that closes at the end of a pass with no credit outstanding is *alone*:
nobody else is about to write, which is when the writer may commit it on the reactor thread.
One that closes because the budget ran out is not: the late senders may write while it
commits.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

# How long an answered sender counts as about to write again. Senders that wait for each ACK
# write their next message within a millisecond or so of it (bench/mllp_intake.py at 8x1).
RECENT_SECONDS = 0.005


class Gatherer:
    """Holds writes on the reactor thread until they make a batch worth committing.

    ``clock`` provides ``seconds()`` and ``callLater()`` (the reactor, or ``task.Clock`` in
    tests). ``dispatch(batch, alone)`` receives each closed batch, in order; ``alone`` is
    True when it closed at the end of a reactor pass with no other sender expected.
    ``busy()`` says whether the writer thread still has work.
    """

    def __init__(
        self,
        clock,
        dispatch: Callable[[list, bool], None],
        busy: Callable[[], bool],
        *,
        budget: float,
        max_rows: int,
    ):
        self.clock = clock
        self.dispatch = dispatch
        self.busy = busy
        self.budget = budget
        self.recent = max(budget, RECENT_SECONDS)
        self.max_rows = max_rows
        self._held: list = []
        self._rows = 0
        self._first = 0.0  # when the first held write came
        self._credits: deque[list] = deque()  # [lapses at, count], oldest first
        self._expected = 0  # sum of the counts in _credits
        self._pass_end = None  # the callLater(0) that runs after this reactor pass
        self._timer = None  # the hold's bound
        self.holds = 0  # batches held for senders expected back
        self.held_to_budget = 0  # holds that ran out of time

    @property
    def waiting(self) -> int:
        """Writes held now."""
        return len(self._held)

    def add(self, req, size: int, sender: bool = True) -> None:
        """A write of ``size`` rows came in; a sender's takes a credit back (not so the
        writes of delivery outcomes and the like)."""
        now = self.clock.seconds()
        if not self._held:
            self._first = now
        self._held.append(req)
        self._rows += size
        if sender and self._expected:
            self._take_credit(now)
        if self._rows >= self.max_rows:
            self._close(False)
        elif self._pass_end is None:
            self._pass_end = self.clock.callLater(0, self._end_of_pass)

    def answered(self, senders: int) -> None:
        """Writes from ``senders`` senders were committed and answered: each may write again
        soon."""
        if senders:
            self._credits.append([self.clock.seconds() + self.recent, senders])
            self._expected += senders

    def flush(self) -> None:
        """Close the held batch now (the writer is stopping, or must keep an order)."""
        if self._held:
            self._close(False)

    def _take_credit(self, now: float) -> None:
        # From the newest answers: the credits of a sender that went quiet keep their own
        # lapse time instead of taking over that of answers given since.
        self._lapse(now)
        if self._credits:
            newest = self._credits[-1]
            newest[1] -= 1
            self._expected -= 1
            if not newest[1]:
                self._credits.pop()

    def _lapse(self, now: float) -> None:
        credits = self._credits
        while credits and credits[0][0] <= now:
            self._expected -= credits.popleft()[1]

    def _end_of_pass(self) -> None:
        self._pass_end = None
        if not self._held:
            return
        if self._expected:
            self._lapse(self.clock.seconds())
        if self.busy() or not self._expected:
            self._close(not self._expected)
            return
        now = self.clock.seconds()
        deadline = self._first + self.budget
        if now >= deadline:  # no budget, or a pass that took longer
            self._give_up()
        elif self._timer is None:
            self.holds += 1
            self._timer = self.clock.callLater(deadline - now, self._budget_spent)

    def _budget_spent(self) -> None:
        self._timer = None
        if self._held:
            self.held_to_budget += 1
            self._give_up()

    def _give_up(self) -> None:
        """Senders are still expected but the budget is spent: close without them (not
        alone: their writes may come while this commit runs), and wait for none of them
        again."""
        self._credits.clear()
        self._expected = 0
        self._close(False)

    def _close(self, alone: bool) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._held, self._rows = self._held, [], 0
        self.dispatch(batch, alone)
