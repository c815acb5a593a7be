"""The cache link in the execution chain, and a Redis cache shared by two processes' caches."""

from __future__ import annotations

from pathlib import Path

from clawq_server.cache.redis import RedisStore
from clawq_server.cache.tool_cache import ToolCache, watcher
from clawq_server.config import CacheConfig
from clawq_server.model import JsonObject, SideEffect, Task, TaskState, ToolResult, utcnow
from clawq_server.tools.base import Tool, ToolContext
from clawq_server.worker.cache_link import CacheLink
from clawq_server.worker.middleware import ToolInvocation, build_chain
from tests.cache.conftest import Kit, MakeCache, settle, write_direct
from tests.redis_support import cleaned, shared_redis_url


async def through_chain(kit: Kit, cache: ToolCache, tool: Tool, **args: object) -> ToolResult:
    """Run tool through a chain holding the cache link."""
    checked: JsonObject = kit.registry.validate(tool.name, args)
    now = utcnow()
    task = Task(
        id="t1", principal=kit.principal.name, tool=tool.name, args=checked,
        state=TaskState.RUNNING, side_effect=tool.side_effect, attempt=1, max_attempts=3,
        priority=0, idempotency_key="", idempotent=False, created=now, not_before=now,
    )  # fmt: skip
    chain = build_chain([CacheLink(cache)])
    return await chain(ToolInvocation(task, tool, checked, ToolContext(kit.principal, "t1")))


async def test_write_through_clawq_invalidates_at_once(kit: Kit, make_cache: MakeCache) -> None:
    """A write_file through the chain drops the file's entry and its directory's listing."""
    (kit.root / "w").mkdir()
    (kit.root / "w" / "f.txt").write_bytes(b"before")
    (kit.root / "keep.txt").write_bytes(b"keep")
    await settle(kit.root / "keep.txt")
    async with make_cache(watch=False) as cache:
        await through_chain(kit, cache, kit.read, path="w/f.txt")
        await through_chain(kit, cache, kit.listing, path="w")
        await through_chain(kit, cache, kit.read, path="keep.txt")
        _, before = await cache.stats()
        await through_chain(kit, cache, kit.write, path="w/f.txt", text="after!")
        _, after = await cache.stats()
        read = await through_chain(kit, cache, kit.read, path="w/f.txt")
    assert sum(s.entries for s in before) == 3
    assert sum(s.entries for s in after) == 1  # keep.txt is not under the write
    assert (read.output, read.cached) == (b"after!", False)


async def test_write_tools_pass_through_uncached(kit: Kit, make_cache: MakeCache) -> None:
    """Write tools always run; their results are never stored."""
    async with make_cache() as cache:
        await through_chain(kit, cache, kit.write, path="n.txt", text="1")
        second = await through_chain(kit, cache, kit.write, path="n.txt", text="1")
        _, stats = await cache.stats()
    assert not second.cached
    assert kit.write.side_effect is SideEffect.WRITE
    assert sum(s.entries for s in stats) == 0


async def test_redis_entries_are_shared_and_still_checked(kit: Kit, tmp_path: Path) -> None:
    """A second cache on the same Redis serves the first one's entry, but never a stale one."""
    path = kit.root / "shared.txt"
    path.write_bytes(b"one")
    await settle(path)
    with shared_redis_url(tmp_path) as url:
        async with cleaned(url) as prefix:
            config = CacheConfig()
            first = ToolCache(config, RedisStore(url, prefix=prefix), kit.registry, watcher())
            second = ToolCache(config, RedisStore(url, prefix=prefix), kit.registry, None)
            try:
                await kit.call(first, kit.read, path="shared.txt")
                await kit.call(first, kit.listing)
                hit = await kit.call(second, kit.read, path="shared.txt")
                listing_hit = await kit.call(second, kit.listing)
                write_direct(path, b"two")
                fresh = await kit.call(second, kit.read, path="shared.txt")
                fresh_first = await kit.call(first, kit.read, path="shared.txt")
                _, stats = await second.stats()
            finally:
                await first.close()
                await second.close()
    assert (hit.output, hit.cached, listing_hit.cached) == (b"one", True, True)
    assert (fresh.output, fresh.cached) == (b"two", False)
    assert fresh_first.output == b"two"
    assert kit.read.runs == 3
    assert {s.tool: s.hits for s in stats}["read_file"] == 1
