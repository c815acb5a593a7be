"""The cache protocols (lookup, entry store), the entry type, and the cache that keeps nothing."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Protocol

from clawq_server.cache.control import ToolCacheStats
from clawq_server.model import NewTask, Task, ToolResult
from clawq_server.policy.principal import Principal


class ResultCache(Protocol):
    """Answers an admitted call from a stored result when the result is still true."""

    async def lookup(self, principal: Principal, task: NewTask) -> Task | None:
        """A finished task carrying the cached result, or None on a miss."""
        ...


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored result and the fingerprint it was computed under.

    ``result`` is held as a hit serves it (marked cached). ``id`` tells successive results
    under one key apart, so a host's own proof of an older result never vouches for a
    newer one. ``age_s`` is how long ago a shared store took the entry, by the store's
    own clock (hosts' clocks may disagree), so each process sharing it applies its own TTL;
    a private store expires entries itself and leaves it 0.
    """

    key: str
    tool: str
    kind: str
    path: str
    result: ToolResult
    size: int
    root_id: tuple[int, int] = (0, 0)
    stamp: tuple[int, ...] | None = None
    digest: str = ""
    id: str = ""
    age_s: float = 0.0


def path_matches(path: str, prefix: str, pattern: str) -> bool:
    """True when path lies under prefix (component-wise) or matches the glob pattern."""
    if prefix and (path == prefix or path.startswith(prefix.rstrip("/") + "/")):
        return True
    return bool(pattern) and fnmatchcase(path, pattern)


class EntryStore(Protocol):
    """Where entries live: process memory or Redis. ``shared`` stores outlive local proofs."""

    shared: bool

    async def get(self, key: str) -> Entry | None:
        """The entry under key, or None (missing or expired)."""
        ...

    async def put(self, entry: Entry, ttl_s: float) -> None:
        """Store entry for ttl_s seconds, replacing any entry under its key."""
        ...

    async def drop(self, keys: Collection[str]) -> int:
        """Remove the entries under keys; the number removed."""
        ...

    async def drop_paths(self, exact: Collection[str], under: str) -> int:
        """Remove entries whose path is one of exact, or lies under under (when given)."""
        ...

    async def drop_where(self, prefix: str, pattern: str) -> int:
        """Remove entries whose path is under prefix or matches pattern."""
        ...

    async def clear(self) -> int:
        """Remove every entry; the number removed."""
        ...

    def count(self, tool: str, *, hit: bool) -> None:
        """Count one hit or miss of tool."""
        ...

    async def stats(self) -> list[ToolCacheStats]:
        """Figures per tool."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
