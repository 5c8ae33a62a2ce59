"""One worker per destination: claim the head of its queue in order, send, record outcomes.

First in, first out: the head is sent, and nothing behind it moves until it is delivered,
dead (on_failure: dead_letter, the default: the queue moves on) or held (on_failure: block:
the queue waits for an operator to replay or skip it). A delivery waiting for its retry time
holds the queue too: an A08 never overtakes its A01.

Outcomes are written through the store writer's group commit, one write per batch sent,
and the worker waits for it before the next claim: a restart resends at most the batch that
was in flight (at-least-once), in order. Timing uses the clock handed in; the database calls
go through ``run_db`` (a thread pool by default), so tests can drive everything
deterministically.

A worker is a named child service of the delivery service ("channel/destination"). Stopping
it lets the send in flight finish and records its outcome (the store stops after delivery);
a send still unanswered after ``stop_timeout`` is left open, to be sent again after restart.
A stopping worker never waits for a retry time or a poll interval.
"""

from __future__ import annotations

import random
import time

from twisted.application.service import Service
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.threads import deferToThreadPool

from engine.delivery.outcome import DEAD, OK, Delivery, Outcome
from engine.delivery.queue import OUTCOME_UPDATE, QueuedRow, QueueStore
from engine.delivery.retry import RetryPolicy
from engine.logging import get_logger
from engine.store.schema import DEAD as DEAD_STATE
from engine.store.schema import DELIVERED, HELD, RETRYING

HEALTHY, DEGRADED, DOWN = "healthy", "degraded", "down"
HEALTH_VALUE = {HEALTHY: 0, DEGRADED: 1, DOWN: 2}
_ABANDONED = object()  # what a send left in flight at the stop bound comes back as


class DestinationWorker(Service):
    batch = 200
    poll_interval = 1.0
    lease_ttl = 15.0
    stop_timeout = 10.0  # how long a stop waits for the send in flight

    def __init__(self, channel: str, config, sender, *, queue: QueueStore, writer, clock,
                 metrics=None, run_db=None, rand: random.Random | None = None,
                 poll_interval: float | None = None, lease_ttl: float | None = None,
                 stop_timeout: float | None = None):  # fmt: skip
        """A worker for one destination (its validated settings); the timings default to the
        class's and the engine gives store_options' own."""
        self.channel = channel
        self.destination = config.name
        for name, value in (("poll_interval", poll_interval), ("lease_ttl", lease_ttl),
                            ("stop_timeout", stop_timeout)):  # fmt: skip
            if value is not None:
                setattr(self, name, float(value))
        self.setName(f"{channel}/{self.destination}")
        self.config = config
        self.sender = sender
        self.queue = queue
        self.writer = writer
        self.clock = clock
        self.policy = RetryPolicy.from_config(config.retry)
        self.block = config.on_failure == "block"
        self.rand = rand or random.Random()
        self.run_db = run_db or self._thread_db
        self.log = get_logger("delivery", channel=channel, destination=self.destination)
        self.health = HEALTHY
        self.paused = False
        self.holder = False
        self._stopping = False
        self._waiter: Deferred | None = None
        self._timer = None
        self._done: Deferred | None = None
        self._stopped: Deferred | None = None
        self._sending: Deferred | None = None  # the send in flight, as the loop waits for it
        self._sender_stopped: Deferred | None = None
        self._lease_at = -1e18
        self._codes: dict[str, object] = {}  # peer response code -> counter child
        self._metrics(metrics)

    def _metrics(self, m) -> None:
        self.m = m
        if m is None:
            return
        labels = (self.channel, self.destination)
        self.m_delivered = m.delivered.labels(*labels)
        self.m_retried = m.retried.labels(*labels)
        self.m_dead = m.dead.labels(*labels)
        self.m_latency = m.delivery_latency.labels(*labels)
        self.m_health = m.destination_health.labels(*labels)
        self.m_health.set(0)

    def _thread_db(self, fn, *args):
        from twisted.internet import reactor

        return deferToThreadPool(reactor, reactor.getThreadPool(), fn, *args)

    # lifecycle ---------------------------------------------------------------------------
    def startService(self) -> None:
        super().startService()
        self.sender.start()
        self._done = self._loop()
        self._done.addErrback(self._crashed)

    def _crashed(self, f):
        self.log.error("delivery worker stopped by an error", error=f.getErrorMessage()[:300])
        self._set_health(DOWN)

    def stopService(self) -> Deferred:
        """Finish the send in flight and record the outcomes reached, then stop the sender
        and give the lease back. Fires when done; a send unanswered after ``stop_timeout``
        is abandoned (left open: it is sent again after restart)."""
        super().stopService()
        if self._stopped is not None:
            return self._stopped
        self._stopping = True
        self.wake()
        loop = self._done or succeed(None)
        if not loop.called:
            bound = self.clock.callLater(self.stop_timeout, self._abandon)
            loop.addBoth(lambda r: bound.cancel() if bound.active() else None)
        loop.addBoth(lambda _: self._stop_sender())
        loop.addBoth(lambda _: self._release())
        loop.addErrback(lambda f: None)
        self._stopped = loop
        return loop

    def _release(self):
        if self.holder:
            self.holder = False
            return self.run_db(self.queue.release, self.channel, self.destination)
        return None

    def _abandon(self) -> None:
        sending, self._sending = self._sending, None
        if sending is not None and not sending.called:
            self.log.warning(
                "a send is still unanswered at shutdown; it is left in the queue and sent "
                "again after restart",
                stop_timeout=self.stop_timeout,
            )
            sending.callback(_ABANDONED)
        self._stop_sender()

    def _stop_sender(self) -> Deferred:
        if self._sender_stopped is None:
            self._sender_stopped = self.sender.stop()
        return self._sender_stopped

    def wake(self) -> None:
        """New deliveries or an operator action: look at the queue (and the pause state) now."""
        self._lease_at = -1e18  # re-read the lease and pause state before the next claim
        waiter, self._waiter = self._waiter, None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if waiter is not None and not waiter.called:
            waiter.callback(None)

    def _sleep(self, seconds: float) -> Deferred:
        if self._stopping:  # a stopping worker never waits: it records and ends
            return succeed(None)
        self._waiter = d = Deferred()
        self._timer = self.clock.callLater(max(0.0, seconds), self.wake)
        return d

    # the loop ----------------------------------------------------------------------------
    @inlineCallbacks
    def _loop(self):
        while not self._stopping:
            now = self.clock.seconds()
            # renew the lease and re-read pause state about every second
            if now - self._lease_at >= min(self.lease_ttl / 3, self.poll_interval):
                self.holder, self.paused = yield self.run_db(
                    self.queue.lease, self.channel, self.destination, now, self.lease_ttl
                )
                self._lease_at = now
            if not self.holder or self.paused:
                yield self._sleep(self.poll_interval)
                self._lease_at = -1e18  # look at the state again on waking
                continue
            rows = yield self.run_db(
                self.queue.claim, self.channel, self.destination, self.batch, self.clock.seconds()
            )
            if not rows:
                yield self._sleep(self.poll_interval)
                continue
            wait = yield self._send_batch(rows)
            if wait:
                yield self._sleep(wait)

    @inlineCallbacks
    def _send_batch(self, rows: list[QueuedRow]):
        """Send rows in order; returns seconds to wait when the head cannot move, else None."""
        updates: list[dict] = []
        wait = None
        for row in rows:
            if self._stopping:
                break
            now = self.clock.seconds()
            if row.status == HELD:
                wait = self.poll_interval  # an operator must replay or skip it
                break
            if row.status == RETRYING and (row.next_attempt_at or 0) > now:
                wait = row.next_attempt_at - now
                break
            delivery = Delivery(row.id, row.message_id, self.channel, self.destination, row.payload,
                                row.content_type, row.attempts, row.created_at,
                                row.control_id)  # fmt: skip
            try:
                outcome = yield self._send(delivery)
            except Exception as exc:  # a sender must not raise; if it does, retry
                outcome = Outcome.retry(f"sender error: {exc}")
            if outcome is _ABANDONED:  # the stop bound passed: this row stays open
                break
            stop_here, update = self._decide(row, outcome, self.clock.seconds())
            updates.append(update)
            if stop_here:  # dead: claim again at once; retry/held: the head waits
                if update["status"] == RETRYING:
                    wait = update["next_at"] - self.clock.seconds()
                if update["status"] == HELD:
                    wait = self.poll_interval
                break
        if updates:
            # one write for the batch's outcomes; a crash before it commits resends them
            # (at-least-once), in order
            try:
                yield self.writer.execute([(OUTCOME_UPDATE, updates)])
            except Exception as exc:  # the store could not record them: do not spin resending
                self.log.error("cannot record delivery outcomes; pausing this queue briefly",
                               error=str(exc)[:300])  # fmt: skip
                self._set_health(DOWN)
                return max(wait or 0.0, 5 * self.poll_interval)
        return wait

    def _send(self, delivery: Delivery) -> Deferred:
        """The sender's answer, or _ABANDONED if the stop bound passes first."""
        answer = Deferred()
        self._sending = answer

        def settle(result):
            if self._sending is answer:
                self._sending = None
            if not answer.called:  # else abandoned: a late answer is not recorded
                answer.callback(result)  # a Failure goes down the errback chain

        self.sender.send(delivery).addBoth(settle)
        return answer

    def _decide(self, row: QueuedRow, outcome: Outcome, now: float) -> tuple[bool, dict]:
        attempts = row.attempts + 1
        kind, delay, why = self.policy.decide(outcome, attempts, now - row.created_at, self.rand)
        update = {"did": row.id, "attempts": attempts, "code": outcome.code,
                  "response": outcome.response, "now": now, "delivered_at": None,
                  "next_at": None, "error": outcome.error}  # fmt: skip
        if self.m is not None and outcome.code:
            child = self._codes.get(outcome.code)
            if child is None:
                child = self._codes[outcome.code] = self.m.acks_received.labels(
                    self.channel, self.destination, outcome.code[:8]
                )
            child.inc()
        if kind == OK:
            update["status"] = DELIVERED
            update["delivered_at"] = now
            if self.m is not None:
                self.m_delivered.inc()
                self.m_latency.observe(max(0.0, time.time() - row.created_at))
            self._set_health(HEALTHY if self.sender.state != "down" else DEGRADED)
            return False, update
        if kind == DEAD:
            update["error"] = why
            update["status"] = HELD if self.block else DEAD_STATE
            if self.m is not None:
                self.m_dead.inc()
            self.log.warning("delivery dead" if not self.block else "delivery held: queue blocked",
                             delivery_id=row.id, message_id=row.message_id, code=outcome.code,
                             attempts=attempts)  # fmt: skip
            self._set_health(DOWN if self.block else DEGRADED)
            return True, update
        update["status"] = RETRYING
        update["next_at"] = now + (delay or 0.0)
        if self.m is not None:
            self.m_retried.inc()
        self.log.info("delivery will be retried", delivery_id=row.id, code=outcome.code,
                      attempts=attempts, wait=round(delay or 0.0, 2))  # fmt: skip
        self._set_health(DOWN if attempts >= 3 or self.sender.state == "down" else DEGRADED)
        return True, update

    def _set_health(self, health: str) -> None:
        self.health = health
        if self.m is not None:
            self.m_health.set(HEALTH_VALUE[health])
