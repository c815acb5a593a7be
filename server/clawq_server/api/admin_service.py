"""AdminService: tools, queue statistics, dead letters, cache control, config reload."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.struct_pb2 import Struct

from clawq.v1 import admin_service_pb2 as adm
from clawq.v1 import admin_service_pb2_grpc as adm_grpc
from clawq_server.api import convert
from clawq_server.api.auth import Authenticator
from clawq_server.api.sized import fitting_page
from clawq_server.api.status import abort
from clawq_server.api.task_service import decode_page_token, encode_page_token
from clawq_server.cache.control import CacheControl
from clawq_server.errors import InvalidArgument, PolicyDenied
from clawq_server.model import TaskPage, TaskQuery, TaskState
from clawq_server.policy.principal import Principal
from clawq_server.queue.base import TaskQueue
from clawq_server.tools.registry import ToolRegistry

Ctx = grpc.aio.ServicerContext[Any, Any]
Reload = Callable[[], Awaitable[str]]


def _dead_page(page: TaskPage) -> adm.ListDeadLettersResponse:
    response = adm.ListDeadLettersResponse(next_page_token=encode_page_token(page.next_cursor))
    convert.add_tasks(response.tasks, page.tasks)
    return response


class AdminServicer(adm_grpc.AdminServiceServicer):
    """Translates AdminService RPCs into registry, queue and cache calls."""

    def __init__(
        self,
        registry: ToolRegistry,
        queue: TaskQueue,
        cache: CacheControl,
        reload: Reload,
        authenticate: Authenticator,
    ) -> None:
        self._registry = registry
        self._queue = queue
        self._cache = cache
        self._reload = reload
        self._authenticate = authenticate

    def _admin(self, context: Ctx) -> Principal:
        """The caller, when it is an admin: everything here but ListTools spans principals."""
        principal = self._authenticate(context)
        if not principal.admin:
            raise PolicyDenied(
                f"{principal.name!r} is not an admin (set admin = true in its [[principals]] table)"
            )
        return principal

    async def ListTools(self, request: adm.ListToolsRequest, context: Ctx) -> adm.ListToolsResponse:
        """Every tool the caller may use (any principal may ask)."""
        try:
            principal = self._authenticate(context)
            infos = []
            for tool in self._registry.tools():
                if not principal.may_use(tool.name):
                    continue
                schema = Struct()
                schema.update(tool.schema)
                infos.append(
                    adm.ToolInfo(
                        name=tool.name,
                        description=tool.description,
                        side_effect=convert.SIDE_EFFECT_TO_PB[tool.side_effect],
                        arguments_schema=schema,
                        cacheable=tool.cacheable,
                    )
                )
            return adm.ListToolsResponse(tools=infos)
        except Exception as error:
            await abort(context, error)

    async def GetQueueStats(
        self, request: adm.GetQueueStatsRequest, context: Ctx
    ) -> adm.GetQueueStatsResponse:
        """Depths and counts of the queue."""
        try:
            self._admin(context)
            stats = await self._queue.stats()
            return adm.GetQueueStatsResponse(
                depths=[
                    adm.QueueDepth(priority=p, ready=n)
                    for p, n in sorted(stats.ready_by_priority.items(), reverse=True)
                ],
                in_flight=stats.in_flight,
                delayed=stats.delayed,
                dead=stats.dead,
            )
        except Exception as error:
            await abort(context, error)

    async def ListDeadLetters(
        self, request: adm.ListDeadLettersRequest, context: Ctx
    ) -> adm.ListDeadLettersResponse:
        """A page of DEAD tasks of every principal."""
        try:
            self._admin(context)
            if request.page_size < 0:
                raise InvalidArgument.field("page_size", "must not be negative")
            query = TaskQuery(
                principal=None,
                states=frozenset({TaskState.DEAD}),
                limit=min(request.page_size or 50, 1000),
                cursor=decode_page_token(request.page_token),
            )
            return await fitting_page(self._queue.list_tasks, query, _dead_page)
        except Exception as error:
            await abort(context, error)

    async def RequeueDeadLetters(
        self, request: adm.RequeueDeadLettersRequest, context: Ctx
    ) -> adm.RequeueDeadLettersResponse:
        """Put DEAD tasks back in the queue."""
        try:
            self._admin(context)
            if not request.all and not request.task_ids:
                raise InvalidArgument.field("task_ids", "name tasks, or set all")
            ids = None if request.all else list(request.task_ids)
            return adm.RequeueDeadLettersResponse(requeued=await self._queue.requeue_dead(ids))
        except Exception as error:
            await abort(context, error)

    async def GetCacheStats(
        self, request: adm.GetCacheStatsRequest, context: Ctx
    ) -> adm.GetCacheStatsResponse:
        """Per-tool cache figures."""
        try:
            self._admin(context)
            enabled, stats = await self._cache.stats()
            return adm.GetCacheStatsResponse(
                enabled=enabled,
                tools=[
                    adm.ToolCacheStats(
                        tool=s.tool,
                        hits=s.hits,
                        misses=s.misses,
                        hit_ratio=s.hits / (s.hits + s.misses) if s.hits + s.misses else 0.0,
                        bytes=s.bytes,
                        entries=s.entries,
                        evictions=s.evictions,
                    )
                    for s in stats
                ],
            )
        except Exception as error:
            await abort(context, error)

    async def ClearCache(
        self, request: adm.ClearCacheRequest, context: Ctx
    ) -> adm.ClearCacheResponse:
        """Drop every cached result."""
        try:
            self._admin(context)
            return adm.ClearCacheResponse(removed=await self._cache.clear())
        except Exception as error:
            await abort(context, error)

    async def InvalidateCache(
        self, request: adm.InvalidateCacheRequest, context: Ctx
    ) -> adm.InvalidateCacheResponse:
        """Drop cached results by path prefix or glob pattern."""
        try:
            principal = self._admin(context)
            if not request.path_prefix and not request.pattern:
                raise InvalidArgument.field("path_prefix", "give a path_prefix or a pattern")
            removed = await self._cache.invalidate(principal, request.path_prefix, request.pattern)
            return adm.InvalidateCacheResponse(removed=removed)
        except Exception as error:
            await abort(context, error)

    async def ReloadConfig(
        self, request: adm.ReloadConfigRequest, context: Ctx
    ) -> adm.ReloadConfigResponse:
        """Re-read the configuration file."""
        try:
            self._admin(context)
            message = await self._reload()
            return adm.ReloadConfigResponse(reloaded=not message, message=message)
        except Exception as error:
            await abort(context, error)
