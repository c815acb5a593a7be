"""The result cache protocol, and the cache that keeps nothing."""

from __future__ import annotations

from typing import Protocol

from clawq_server.model import NewTask, Task
from clawq_server.policy.principal import Principal


class ResultCache(Protocol):
    """Answers an admitted call from a stored result when the result is still true."""

    async def lookup(self, principal: Principal, task: NewTask) -> Task | None:
        """A finished task carrying the cached result, or None on a miss."""
        ...


class NoCache:
    """A cache that never answers (the cache is switched off)."""

    async def lookup(self, principal: Principal, task: NewTask) -> Task | None:
        """Always a miss."""
        return None
