"""Retry policy: backoff, jitter, caps, attempts, age, Retry-After, distinct outcomes."""

from __future__ import annotations

import random

from engine.delivery.outcome import DEAD, OK, RETRY, Outcome
from engine.delivery.retry import RetryPolicy

from . import settings


def test_exponential_backoff_capped():
    p = RetryPolicy(backoff=2, max_backoff=30, jitter=0)
    assert [p.delay(n) for n in range(1, 7)] == [2, 4, 8, 16, 30, 30]


def test_jitter_stays_within_bounds_and_varies():
    p = RetryPolicy(backoff=10, max_backoff=1000, jitter=0.2)
    rand = random.Random(7)
    delays = {round(p.delay(1, rand), 3) for _ in range(50)}
    assert len(delays) > 10 and all(8 <= d <= 12 for d in delays)


def test_outcomes_stay_distinct():
    p = RetryPolicy(max_attempts=3, backoff=1, jitter=0)
    assert p.decide(Outcome.ok("AA"), 1, 0) == (OK, None, None)
    assert p.decide(Outcome.dead("AR from peer", "AR"), 1, 0) == (DEAD, None, "AR from peer")
    assert p.decide(Outcome.retry("AE from peer", "AE"), 1, 0) == (RETRY, 1, None)
    assert p.decide(Outcome.retry("timeout"), 2, 0) == (RETRY, 2, None)
    kind, wait, why = p.decide(Outcome.retry("timeout"), 3, 0)
    assert (kind, wait) == (DEAD, None) and why == "gave up after 3 attempts: timeout"


def test_retry_after_is_honoured():
    p = RetryPolicy(backoff=1, jitter=0)
    assert p.decide(Outcome.retry("503", "503", retry_after=120), 1, 0) == (RETRY, 120, None)


def test_max_age():
    p = RetryPolicy(backoff=10, jitter=0, max_age=60, max_attempts=100)
    assert p.decide(Outcome.retry("down"), 1, 40)[0] == RETRY
    kind, _, why = p.decide(Outcome.retry("down"), 1, 55)
    assert kind == DEAD and "max_age" in why


def test_from_config():
    retry = settings.destination("file", file="out", retry={"max_attempts": 20}).retry
    p = RetryPolicy.from_config(retry)
    assert (p.max_attempts, p.backoff, p.max_backoff, p.max_age) == (20, 2.0, 300.0, 0.0)
