"""The no-op task every synchronous peer runs: count one completion in the private Redis."""

from __future__ import annotations

import os

import redis

DONE = "bench:done"
_client: list[redis.Redis] = []


def noop(path: str) -> None:
    """Do nothing (the raw-limit figures only enqueue it)."""


def counted(path: str) -> None:
    """Count one completion; end-to-end runs wait for the counter to reach the task count."""
    if not _client:
        _client.append(redis.Redis.from_url(os.environ["CLAWQ_BENCH_REDIS_URL"]))
    _client[0].incr(DONE)
