"""The admin side of the cache: statistics, clear, invalidate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from clawq_server.policy.principal import Principal


@dataclass(frozen=True, slots=True)
class ToolCacheStats:
    """Cache figures of one tool."""

    tool: str
    hits: int = 0
    misses: int = 0
    bytes: int = 0
    entries: int = 0
    evictions: int = 0


class CacheControl(Protocol):
    """What AdminService may do to the cache."""

    async def stats(self) -> tuple[bool, list[ToolCacheStats]]:
        """Whether the cache is on, and figures per tool."""
        ...

    async def clear(self) -> int:
        """Drop everything; the number of entries dropped."""
        ...

    async def invalidate(self, principal: Principal, path_prefix: str, pattern: str) -> int:
        """Drop entries under a path prefix or matching a glob; the number dropped."""
        ...
