"""Fixtures of the cache tests: a workspace root, real file tools, caches over every store."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from clawq_server.cache.fingerprint import RACY_WINDOW_NS
from clawq_server.cache.memory import MemoryStore
from clawq_server.cache.redis import RedisStore
from clawq_server.cache.tool_cache import ToolCache, watcher
from clawq_server.config import CacheConfig
from clawq_server.model import JsonObject, SideEffect, ToolResult
from clawq_server.policy.principal import Principal, Root
from clawq_server.tools.base import Tool, ToolContext
from clawq_server.tools.files import ListDirectoryTool, ReadFileTool, WriteFileTool
from clawq_server.tools.registry import ToolRegistry
from tests.redis_support import cleaned, shared_redis_url

MakeCache = Callable[..., AbstractAsyncContextManager[ToolCache]]


class CountingTool:
    """A real tool wrapping another: counts runs and may hold each run until a gate opens.

    hold, when set, keeps the next run's result back (once) until it opens: the run has
    read what it reads (ran is set) but has not answered yet.
    """

    def __init__(self, inner: Tool, gate: asyncio.Event | None = None) -> None:
        self.inner = inner
        self.gate = gate
        self.hold: asyncio.Event | None = None
        self.runs = 0
        self.started = asyncio.Event()
        self.ran = asyncio.Event()

    @property
    def name(self) -> str:
        """The wrapped tool's name."""
        return self.inner.name

    @property
    def description(self) -> str:
        """The wrapped tool's description."""
        return self.inner.description

    @property
    def side_effect(self) -> SideEffect:
        """The wrapped tool's side effect."""
        return self.inner.side_effect

    @property
    def cacheable(self) -> bool:
        """The wrapped tool's cacheability."""
        return self.inner.cacheable

    @property
    def schema(self) -> JsonObject:
        """The wrapped tool's schema."""
        return self.inner.schema

    async def run(self, args: JsonObject, ctx: ToolContext) -> ToolResult:
        """Count, wait for the gate if any, then run the wrapped tool."""
        self.runs += 1
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        result = await self.inner.run(args, ctx)
        self.ran.set()
        hold, self.hold = self.hold, None
        if hold is not None:
            await hold.wait()
        return result


@dataclass
class Kit:
    """Tools, a registry and a principal over one workspace root."""

    root: Path
    principal: Principal
    registry: ToolRegistry
    read: CountingTool
    listing: CountingTool
    write: WriteFileTool = field(default_factory=WriteFileTool)

    async def call(
        self, cache: ToolCache, tool: Tool, principal: Principal | None = None, **args: Any
    ) -> ToolResult:
        """One run of tool through cache, with validated arguments, as the cache link does."""
        who = principal or self.principal
        checked = self.registry.validate(tool.name, args)
        ctx = ToolContext(who, "t-test")
        return await cache.run(tool, checked, who, lambda: tool.run(checked, ctx))


def principal_for(root: Path, name: str = "alice") -> Principal:
    """A principal whose only root is root."""
    return Principal(name=name, roots=(Root(root.resolve()),))


@pytest.fixture
def kit(tmp_path: Path) -> Kit:
    """A workspace root with counting read_file and list_directory tools."""
    root = tmp_path / "root"
    root.mkdir()
    read, listing = CountingTool(ReadFileTool()), CountingTool(ListDirectoryTool())
    registry = ToolRegistry()
    for tool in (read, listing, WriteFileTool()):
        registry.register(tool)
    return Kit(root, principal_for(root), registry, read, listing)


@pytest.fixture(params=["memory", "redis"])
def make_cache(request: pytest.FixtureRequest, kit: Kit, tmp_path: Path) -> MakeCache:
    """Builds caches over the store under test; with inotify unless watch=False."""

    @asynccontextmanager
    async def make(*, watch: bool = True, **config: Any) -> AsyncIterator[ToolCache]:
        settings = replace(CacheConfig(), **config)
        if request.param == "memory":
            store = MemoryStore(settings.max_entries, settings.max_bytes)
            cache = ToolCache(settings, store, kit.registry, watcher() if watch else None)
            try:
                yield cache
            finally:
                await cache.close()
            return
        with shared_redis_url(tmp_path) as url:
            async with cleaned(url) as prefix:
                redis_store = RedisStore(url, prefix=prefix)
                w = watcher() if watch else None
                cache = ToolCache(settings, redis_store, kit.registry, w)
                try:
                    yield cache
                finally:
                    await cache.close()

    return make


async def settle(path: Path) -> None:
    """Wait until path's last change is older than the racy window, so a read may be cached."""
    st = os.stat(path, follow_symlinks=False)
    changed = max(st.st_mtime_ns, st.st_ctime_ns)
    deadline = time.monotonic() + 5.0
    while time.time_ns() <= changed + RACY_WINDOW_NS + 1_000_000:
        assert time.monotonic() < deadline, "the clock does not advance"
        await asyncio.sleep(0.005)


def write_direct(path: Path, data: bytes) -> None:
    """Write in place behind clawq's back (same inode, truncate and rewrite)."""
    with open(path, "r+b" if path.exists() else "wb") as handle:
        handle.truncate(0)
        handle.write(data)
