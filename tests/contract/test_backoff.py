"""Retry delays: exponential growth, a cap, and full jitter below the ceiling."""

from __future__ import annotations

from datetime import timedelta

from clawq_server.model import RetryPolicy
from clawq_server.queue.backoff import backoff_ceiling, backoff_delay

POLICY = RetryPolicy(base_delay=timedelta(seconds=1), max_delay=timedelta(seconds=10))


def test_ceiling_doubles_per_attempt_up_to_the_cap() -> None:
    """The ceiling is base * 2**(attempt-1), never above max_delay."""
    assert [backoff_ceiling(a, POLICY) for a in (1, 2, 3, 4, 5, 500)] == [1, 2, 4, 8, 10, 10]


def test_delay_is_drawn_between_zero_and_the_ceiling() -> None:
    """Full jitter scales the ceiling by a uniform draw in [0, 1)."""
    assert backoff_delay(3, POLICY, rand=lambda: 0.0) == 0.0
    assert backoff_delay(3, POLICY, rand=lambda: 0.5) == 2.0
    draws = [backoff_delay(4, POLICY) for _ in range(200)]
    assert all(0 <= d < 8 for d in draws)
    assert len(set(draws)) > 100
