"""The cache link of the execution chain: serves and stores read-only results, and drops what
writes touch. It sits after Permission and Validation, so a principal is only ever served a
result it was allowed to compute."""

from __future__ import annotations

import logging

from clawq_server.cache.tool_cache import ToolCache
from clawq_server.errors import BackendUnavailable
from clawq_server.model import SideEffect, ToolResult
from clawq_server.worker.middleware import Next, ToolInvocation

log = logging.getLogger(__name__)


class CacheLink:
    """Answers cacheable read-only calls from the cache; invalidates after writes."""

    def __init__(self, cache: ToolCache) -> None:
        self._cache = cache

    async def __call__(self, call: ToolInvocation, next: Next) -> ToolResult:
        """Run through the cache (reads) or run and then invalidate (writes on a path)."""
        if call.tool.side_effect is SideEffect.READ_ONLY:
            return await self._cache.run(
                call.tool, call.args, call.ctx.principal, lambda: next(call)
            )
        if "path" not in call.args:
            return await next(call)
        try:
            return await next(call)
        finally:
            # Also after a failure: a write cut short may still have changed the file.
            await self._invalidate(call)

    async def _invalidate(self, call: ToolInvocation) -> None:
        try:
            await self._cache.invalidate_write(call.ctx.principal, call.args)
        except BackendUnavailable as error:
            # Safe to skip: every entry is re-proven against the file system before it is
            # served, so a missed drop costs a miss later, never a stale answer. Failing the
            # write instead would report a side effect that did happen as not done.
            log.warning("cache invalidation after %s skipped: %s", call.tool.name, error.message)
