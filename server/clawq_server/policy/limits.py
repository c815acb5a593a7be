"""Per-principal token buckets: the rate limit of admission."""

from __future__ import annotations

import time
from dataclasses import dataclass

from clawq_server.errors import ResourceExhausted
from clawq_server.policy.principal import Principal


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """Token bucket per principal: rate_per_s refill, burst capacity (0 rate: unlimited)."""

    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}

    def take(self, principal: Principal, count: int = 1) -> None:
        """Spend count tokens or raise ResourceExhausted(RATE_LIMITED) with the wait.

        A batch larger than the burst is taken from a full bucket, which goes into debt:
        the calls after it wait until the rate has paid for it, so the average holds and
        a large batch is not refused forever.
        """
        rate = principal.rate_per_s
        if rate <= 0:
            return
        capacity = float(max(principal.burst, 1))
        now = time.monotonic()
        bucket = self._buckets.setdefault(principal.name, _Bucket(capacity, now))
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.stamp) * rate)
        bucket.stamp = now
        needed = min(count, capacity)
        if bucket.tokens < needed:
            wait = (needed - bucket.tokens) / rate
            raise ResourceExhausted(
                f"rate limit of {rate:g} calls/s exceeded", retry_after=wait, reason="RATE_LIMITED"
            )
        bucket.tokens -= count

    def give_back(self, principal: Principal, count: int) -> None:
        """Return count tokens taken for calls that were then refused as a whole, so a
        refused batch leaves no debt behind."""
        bucket = self._buckets.get(principal.name)
        if bucket is not None and count > 0:
            bucket.tokens = min(float(max(principal.burst, 1)), bucket.tokens + count)
