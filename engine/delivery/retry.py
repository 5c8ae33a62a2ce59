"""Retry policy: exponential backoff with jitter, a maximum backoff, a maximum number of
attempts or age. Pure, with the random source handed in, so tests are exact."""

from __future__ import annotations

import random
from dataclasses import dataclass

from engine.delivery.outcome import DEAD, OK, RETRY, Outcome


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 10
    backoff: float = 2.0  # wait after the first failure; doubles each time
    max_backoff: float = 300.0
    max_age: float = 0.0  # 0: no age limit
    jitter: float = 0.2  # +-20% of the delay, so a fleet of retries does not stampede

    @classmethod
    def from_config(cls, retry) -> RetryPolicy:
        """The policy of a destination's validated ``retry`` settings."""
        return cls(
            max_attempts=int(retry.max_attempts),
            backoff=float(retry.backoff),
            max_backoff=float(retry.max_backoff),
            max_age=float(retry.max_age or 0.0),
        )

    def delay(self, attempts: int, rand: random.Random | None = None) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt (1-based)."""
        base = min(self.max_backoff, self.backoff * (2 ** max(0, attempts - 1)))
        r = (rand or random).uniform(-self.jitter, self.jitter)
        return max(0.0, min(self.max_backoff, base * (1 + r)))

    def decide(
        self, outcome: Outcome, attempts: int, age: float, rand: random.Random | None = None
    ) -> tuple[str, float | None, str | None]:
        """(OK | RETRY | DEAD, seconds to wait, why dead) after ``attempts`` attempts."""
        if outcome.kind == OK:
            return OK, None, None
        if outcome.kind == DEAD:
            return DEAD, None, outcome.error
        if attempts >= self.max_attempts:
            return DEAD, None, f"gave up after {attempts} attempts: {outcome.error}"
        wait = self.delay(attempts, rand)
        if outcome.retry_after is not None:
            wait = max(wait, outcome.retry_after)  # the peer asked for at least this
        if self.max_age and age + wait > self.max_age:
            return DEAD, None, f"gave up at age {age:.0f} s (max_age): {outcome.error}"
        return RETRY, wait, None
