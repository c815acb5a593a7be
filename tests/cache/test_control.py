"""Bounds, TTLs, per-tool switches, invalidation, clear and statistics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from clawq_server.cache.base import Entry
from clawq_server.cache.memory import MemoryStore
from clawq_server.cache.redis import TIDY_CHUNK, RedisStore
from clawq_server.cache.tool_cache import ToolCache, watcher
from clawq_server.config import CacheConfig
from clawq_server.errors import ClawqError, InvalidArgument, PolicyDenied
from clawq_server.model import ToolResult
from clawq_server.policy.principal import Root
from tests.cache.conftest import Kit, MakeCache, settle
from tests.redis_support import cleaned, shared_redis_url


async def files(root: Path, *names: str, size: int = 4) -> None:
    """Create settled files of size bytes under root."""
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name[0].encode() * size)
    for name in names:
        await settle(root / name)


async def test_lru_bound_by_entries(kit: Kit) -> None:
    """With room for two entries, the least recently used one is evicted and counted."""
    await files(kit.root, "a", "b", "c")
    cache = ToolCache.in_memory(CacheConfig(max_entries=2), kit.registry)
    try:
        await kit.call(cache, kit.read, path="a")
        await kit.call(cache, kit.read, path="b")
        assert (await kit.call(cache, kit.read, path="a")).cached  # a is now most recent
        await kit.call(cache, kit.read, path="c")
        assert (await kit.call(cache, kit.read, path="a")).cached
        assert not (await kit.call(cache, kit.read, path="b")).cached
        _, [stats] = await cache.stats()
    finally:
        await cache.close()
    assert stats.evictions >= 1


async def test_lru_bound_by_bytes(kit: Kit) -> None:
    """Entries beyond the byte budget push the oldest out; the total stays within it."""
    await files(kit.root, "a", "b", "c", size=100)
    store = MemoryStore(100, 250)
    cache = ToolCache(CacheConfig(max_entries=100, max_bytes=250), store, kit.registry, watcher())
    try:
        for name in ("a", "b", "c"):
            await kit.call(cache, kit.read, path=name)
        assert store.bytes <= 250
        assert not (await kit.call(cache, kit.read, path="a")).cached
    finally:
        await cache.close()


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now


async def test_ttl_expiry_in_memory(kit: Kit) -> None:
    """An entry older than its tool's TTL is not served."""
    await files(kit.root, "t")
    clock = Clock()
    config = CacheConfig(tool_ttl_s={"read_file": 5.0})
    cache = ToolCache(config, MemoryStore(10, 1 << 20, clock=clock), kit.registry, watcher())
    try:
        await kit.call(cache, kit.read, path="t")
        clock.now += 4.9
        assert (await kit.call(cache, kit.read, path="t")).cached
        clock.now += 0.2
        assert not (await kit.call(cache, kit.read, path="t")).cached
    finally:
        await cache.close()


async def test_ttl_expiry(kit: Kit, make_cache: MakeCache) -> None:
    """With a tiny TTL the entry disappears by itself (Redis expiry or the store's clock)."""
    await files(kit.root, "t")
    async with make_cache(tool_ttl_s={"read_file": 0.2}) as cache:
        await kit.call(cache, kit.read, path="t")
        deadline = time.monotonic() + 10.0
        while (await kit.call(cache, kit.read, path="t")).cached:
            assert time.monotonic() < deadline, "the entry never expired"
            await asyncio.sleep(0.05)


async def test_large_results_are_not_cached(kit: Kit, make_cache: MakeCache) -> None:
    """A result over max_entry_bytes is returned but never stored."""
    await files(kit.root, "big", size=2048)
    async with make_cache(max_entry_bytes=1024) as cache:
        await kit.call(cache, kit.read, path="big")
        again = await kit.call(cache, kit.read, path="big")
    assert not again.cached
    assert len(again.output) == 2048


async def test_disabled_tool_is_never_cached(kit: Kit, make_cache: MakeCache) -> None:
    """A tool switched off is always run; the others are still cached."""
    await files(kit.root, "d")
    async with make_cache(disabled_tools=frozenset({"read_file"})) as cache:
        await kit.call(cache, kit.read, path="d")
        await kit.call(cache, kit.listing)
        read_again = await kit.call(cache, kit.read, path="d")
        list_again = await kit.call(cache, kit.listing)
    assert (read_again.cached, list_again.cached) == (False, True)


async def test_invalidate_by_prefix_and_pattern(kit: Kit, make_cache: MakeCache) -> None:
    """A prefix drops what lies under it; a glob drops what it matches; the rest stays."""
    await files(kit.root, "sub/one.txt", "sub2/two.txt", "three.md")
    async with make_cache() as cache:
        for name in ("sub/one.txt", "sub2/two.txt", "three.md"):
            await kit.call(cache, kit.read, path=name)
        assert await cache.invalidate(kit.principal, "sub", "") == 1
        assert await cache.invalidate(kit.principal, "", "*.md") == 1
        hits = {n: (await kit.call(cache, kit.read, path=n)).cached
                for n in ("sub/one.txt", "sub2/two.txt", "three.md")}  # fmt: skip
    assert hits == {"sub/one.txt": False, "sub2/two.txt": True, "three.md": False}


@pytest.mark.parametrize(("prefix", "error"), [("../x", PolicyDenied), ("a\0b", InvalidArgument)])
async def test_a_refused_prefix_names_path_prefix(
    kit: Kit, make_cache: MakeCache, prefix: str, error: type[ClawqError]
) -> None:
    """A prefix outside the roots, or malformed, is refused naming the request's field."""
    async with make_cache() as cache:
        with pytest.raises(error) as refused:
            await cache.invalidate(kit.principal, prefix, "")
    assert [v.field for v in refused.value.violations] == ["path_prefix"]


async def test_clear_drops_everything(kit: Kit, make_cache: MakeCache) -> None:
    """clear removes every entry and reports how many."""
    await files(kit.root, "a", "b")
    async with make_cache() as cache:
        await kit.call(cache, kit.read, path="a")
        await kit.call(cache, kit.read, path="b")
        assert await cache.clear() == 2
        assert not (await kit.call(cache, kit.read, path="a")).cached


async def test_stats_per_tool(kit: Kit, make_cache: MakeCache) -> None:
    """Hits, misses, entries and bytes are counted per tool."""
    await files(kit.root, "a", size=10)
    async with make_cache() as cache:
        await kit.call(cache, kit.read, path="a")
        await kit.call(cache, kit.read, path="a")
        await kit.call(cache, kit.read, path="a")
        await kit.call(cache, kit.listing)
        enabled, stats = await cache.stats()
    by_tool = {s.tool: s for s in stats}
    read = by_tool["read_file"]
    assert enabled
    assert (read.hits, read.misses, read.entries) == (2, 1, 1)
    assert read.bytes >= 10
    assert (by_tool["list_directory"].misses, by_tool["list_directory"].entries) == (1, 1)


async def test_a_write_under_a_nested_root_drops_the_outer_roots_listing(
    kit: Kit, make_cache: MakeCache
) -> None:
    """With roots nested, a write inside the inner one also drops the outer one's listing."""
    await files(kit.root, "inner/x")
    nested = replace(kit.principal, roots=(*kit.principal.roots, Root(kit.root / "inner")))
    async with make_cache() as cache:
        await kit.call(cache, kit.listing, nested, path=".", recursive=True)
        assert (await kit.call(cache, kit.listing, nested, path=".", recursive=True)).cached
        assert await cache.invalidate_write(nested, {"path": "inner/x"}) == 1
        _, stats = await cache.stats()
    assert {s.tool: s.entries for s in stats}.get("list_directory", 0) == 0


@asynccontextmanager
async def _sharing(kit: Kit, tmp_path: Path, **settings: Any) -> AsyncIterator[Caches]:
    """Two caches over one Redis prefix: the first with default settings, the second with
    settings, as two processes configured differently would be."""
    with shared_redis_url(tmp_path) as url:
        async with cleaned(url) as prefix:
            first = ToolCache(CacheConfig(), RedisStore(url, prefix=prefix), kit.registry)
            second_config = replace(CacheConfig(), **settings)
            second = ToolCache(second_config, RedisStore(url, prefix=prefix), kit.registry)
            try:
                yield first, second
            finally:
                await first.close()
                await second.close()


Caches = tuple[ToolCache, ToolCache]


async def test_a_shared_entry_is_served_only_within_the_readers_ttl(
    kit: Kit, tmp_path: Path
) -> None:
    """An entry stored under a 1 h TTL is refused by a process whose TTL is shorter, once it
    is older than that; the storing process still serves it."""
    await files(kit.root, "t")
    async with _sharing(kit, tmp_path, tool_ttl_s={"read_file": 0.3}) as (long, short):
        await kit.call(long, kit.read, path="t")
        assert (await kit.call(short, kit.read, path="t")).cached
        assert (await kit.call(long, kit.read, path="t")).cached
        deadline = time.monotonic() + 10.0
        while (await kit.call(short, kit.read, path="t")).cached:
            assert time.monotonic() < deadline, "the short TTL was never applied"
            await asyncio.sleep(0.05)


async def test_a_shared_entrys_age_is_told_by_the_stores_clock(
    kit: Kit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hosts' clocks may disagree: a reader whose wall clock runs an hour ahead of the
    writer's still serves an entry stored a moment ago under a one-minute TTL."""
    await files(kit.root, "t")
    async with _sharing(kit, tmp_path, tool_ttl_s={"read_file": 60}) as (writer, reader):
        await kit.call(writer, kit.read, path="t")
        wall = time.time
        monkeypatch.setattr(time, "time", lambda: wall() + 3600)
        assert (await kit.call(reader, kit.read, path="t")).cached


async def test_a_shared_entry_over_the_readers_size_cap_is_not_served(
    kit: Kit, tmp_path: Path
) -> None:
    """An entry another process could store is not served past this process's size cap."""
    await files(kit.root, "big", size=2048)
    async with _sharing(kit, tmp_path, max_entry_bytes=1024) as (large, small):
        await kit.call(large, kit.read, path="big")
        assert (await kit.call(large, kit.read, path="big")).cached
        assert not (await kit.call(small, kit.read, path="big")).cached


async def test_tidying_the_index_spares_an_entry_renewed_meanwhile(tmp_path: Path) -> None:
    """An index field read as expired but renewed before it is tidied stays indexed."""
    with shared_redis_url(tmp_path) as url:
        async with cleaned(url) as prefix:
            store = RedisStore(url, prefix=prefix)
            try:
                await store.put(_entry("old"), 0.001)
                await _until_past(time.time() + 0.002)
                await store.put(_entry("live"), 60)
                scan = store._index()
                assert (await anext(scan))[0] == "live"
                await store.put(_entry("old"), 60)
                assert [key async for key, _ in scan] == []
                assert await store.clear() == 2
            finally:
                await store.close()


def _entry(key: str) -> Entry:
    return Entry(key, "read_file", "file", f"/w/{key}", ToolResult(output=b"x"), 1)


async def _until_past(moment: float) -> None:
    deadline = time.monotonic() + 5.0
    while time.time() <= moment:
        assert time.monotonic() < deadline, "the clock does not advance"
        await asyncio.sleep(0.001)


async def test_tidying_removes_every_expired_index_field(tmp_path: Path) -> None:
    """Expired index fields are tidied in chunks, all of them."""
    with shared_redis_url(tmp_path) as url:
        async with cleaned(url) as prefix:
            store = RedisStore(url, prefix=prefix)
            try:
                for i in range(2 * TIDY_CHUNK + 7):
                    await store.put(_entry(f"e{i}"), 0.001)
                await _until_past(time.time() + 0.002)
                assert await store.stats() == []
                assert await store._client.hlen(store.keys.index) == 0
            finally:
                await store.close()
