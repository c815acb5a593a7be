"""Retry delays: exponential backoff with full jitter, shared by every queue backend."""

from __future__ import annotations

import random
from collections.abc import Callable

from clawq_server.model import RetryPolicy

# 2**62 seconds is beyond any max_delay; capping the exponent keeps the float finite.
_MAX_EXPONENT = 62


def backoff_ceiling(attempt: int, policy: RetryPolicy) -> float:
    """The upper bound in seconds of the delay before retrying after attempt (1-based)."""
    base = policy.base_delay.total_seconds()
    cap = policy.max_delay.total_seconds()
    exponent = min(max(attempt - 1, 0), _MAX_EXPONENT)
    return min(cap, base * 2.0**exponent)


def backoff_delay(
    attempt: int, policy: RetryPolicy, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before retrying after attempt: uniform in [0, ceiling).

    Full jitter spreads retries of tasks that failed together (one flaky backend)
    instead of bringing them back in lockstep.
    """
    return backoff_ceiling(attempt, policy) * rand()
