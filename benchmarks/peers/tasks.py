"""The no-op task of the synchronous peers: count one completion in the private Redis."""

from __future__ import annotations

import redis

from benchmarks.peers.base import DONE, redis_url

_client: list[redis.Redis] = []


def counted(path: str) -> None:
    """Count one completion; end-to-end runs wait for the counter to reach the task count."""
    if not _client:
        _client.append(redis.Redis.from_url(redis_url()))
    _client[0].incr(DONE)
