"""The in-process entry store: LRU, bounded by entries and bytes, with TTLs and per-tool figures."""

from __future__ import annotations

import time
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Callable, Collection

from clawq_server.cache.base import Entry, path_matches
from clawq_server.cache.control import ToolCacheStats

OnDrop = Callable[[str], None]


class MemoryStore:
    """Entries in an OrderedDict (least recently used first), indexed by the path they read.

    Synchronous inside; the async methods never suspend, so a hit costs no scheduling.
    """

    shared = False

    def __init__(
        self,
        max_entries: int,
        max_bytes: int,
        *,
        on_drop: OnDrop | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[Entry, float]] = OrderedDict()
        self._by_path: defaultdict[str, set[str]] = defaultdict(set)
        self._bytes = 0
        self._tool_bytes: Counter[str] = Counter()
        self._tool_entries: Counter[str] = Counter()
        self._hits: Counter[str] = Counter()
        self._misses: Counter[str] = Counter()
        self._evictions: Counter[str] = Counter()
        self._clock = clock
        self.on_drop = on_drop

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        """Bytes held by every entry."""
        return self._bytes

    async def get(self, key: str) -> Entry | None:
        """The entry under key, made most recently used; expired entries are dropped."""
        held = self._entries.get(key)
        if held is None:
            return None
        entry, expires = held
        if expires <= self._clock():
            self._remove(key)
            return None
        self._entries.move_to_end(key)
        return entry

    async def put(self, entry: Entry, ttl_s: float) -> None:
        """Store entry, then evict the least recently used until within both bounds."""
        if entry.size > self._max_bytes or self._max_entries <= 0:
            return
        if entry.key in self._entries:
            self._remove(entry.key)
        self._entries[entry.key] = (entry, self._clock() + ttl_s)
        self._by_path[entry.path].add(entry.key)
        self._bytes += entry.size
        self._tool_bytes[entry.tool] += entry.size
        self._tool_entries[entry.tool] += 1
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            oldest = next(iter(self._entries))
            self._evictions[self._entries[oldest][0].tool] += 1
            self._remove(oldest)

    async def drop(self, keys: Collection[str]) -> int:
        """Remove the entries under keys."""
        return sum(self._remove(key) for key in list(keys))

    async def drop_paths(self, exact: Collection[str], under: str) -> int:
        """Remove entries reading one of exact, or anything under under."""
        keys = {key for path in exact for key in self._by_path.get(path, ())}
        if under:
            keys.update(
                key
                for path, held in self._by_path.items()
                if path_matches(path, under, "")
                for key in held
            )
        return await self.drop(keys)

    async def drop_where(self, prefix: str, pattern: str) -> int:
        """Remove entries whose path is under prefix or matches pattern."""
        keys = {
            key
            for path, held in self._by_path.items()
            if path_matches(path, prefix, pattern)
            for key in held
        }
        return await self.drop(keys)

    async def clear(self) -> int:
        """Remove everything."""
        return await self.drop(list(self._entries))

    def count(self, tool: str, *, hit: bool) -> None:
        """Count one hit or miss."""
        (self._hits if hit else self._misses)[tool] += 1

    async def stats(self) -> list[ToolCacheStats]:
        """Figures of every tool that was ever looked up or stored."""
        tools = set(self._hits) | set(self._misses) | set(self._tool_entries) | set(self._evictions)
        return [
            ToolCacheStats(
                tool=tool,
                hits=self._hits[tool],
                misses=self._misses[tool],
                bytes=self._tool_bytes[tool],
                entries=self._tool_entries[tool],
                evictions=self._evictions[tool],
            )
            for tool in sorted(tools)
        ]

    async def close(self) -> None:
        """Nothing to release."""

    def _remove(self, key: str) -> bool:
        held = self._entries.pop(key, None)
        if held is None:
            return False
        entry = held[0]
        self._bytes -= entry.size
        self._tool_bytes[entry.tool] -= entry.size
        self._tool_entries[entry.tool] -= 1
        keys = self._by_path.get(entry.path)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_path[entry.path]
        if self.on_drop is not None:
            self.on_drop(key)
        return True
