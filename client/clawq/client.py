"""AsyncClient: the asyncio client of every clawq RPC, returning the client's plain types."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self

import grpc

from clawq import _convert as convert
from clawq._channel import Connection, Pem
from clawq._stream import Outbox
from clawq.errors import DeadlineExceeded, TaskFailed, from_rpc_error
from clawq.types import (
    Ack,
    CacheStats,
    Call,
    ConfigReload,
    QueueStats,
    Result,
    Task,
    ToolInfo,
)
from clawq.v1 import admin_service_pb2 as admin_pb
from clawq.v1 import admin_service_pb2_grpc as admin_grpc
from clawq.v1 import task_service_pb2 as task_pb
from clawq.v1 import task_service_pb2_grpc as task_grpc


class AsyncClient:
    """The asyncio client: ``async with AsyncClient("127.0.0.1:50051") as c: ...``.

    Args:
        target: The server's "host:port".
        token: Bearer token sent as ``authorization`` metadata on every call.
        tls: Use TLS (implied by ca, cert or key).
        ca: Root certificates to trust (PEM bytes or a path); the system's when None.
        cert: Client certificate for mTLS (PEM bytes or a path).
        key: The client certificate's private key (PEM bytes or a path).
        timeout: Deadline in seconds of each RPC; waits add their own wait time to it.

    The channel opens on first use, inside the running event loop.
    """

    def __init__(
        self,
        target: str,
        token: str | None = None,
        *,
        tls: bool = False,
        ca: Pem | None = None,
        cert: Pem | None = None,
        key: Pem | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._conn = Connection(target, token, timeout, tls=tls, ca=ca, cert=cert, key=key)
        self._call = self._conn.call

    @property
    def target(self) -> str:
        """The server's "host:port"."""
        return self._conn.target

    @property
    def _tasks(self) -> task_grpc.TaskServiceAsyncStub:
        return self._conn.tasks

    @property
    def _admin(self) -> admin_grpc.AdminServiceAsyncStub:
        return self._conn.admin

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel; in-flight calls are cancelled."""
        await self._conn.close()

    # --- submitting and running -------------------------------------------------------

    async def execute(self, tool: str, /, *, timeout: float = 60.0, **args: Any) -> Result:
        """Run a tool and wait for its result; see execute_call."""
        return await self.execute_call(Call.of(tool, args), timeout=timeout)

    async def execute_call(self, call: Call, *, timeout: float = 60.0) -> Result:
        """Run a call and wait up to ``timeout`` seconds for its result.

        Raises:
            TaskFailed: The task ended FAILED, DEAD or CANCELLED.
            DeadlineExceeded: The wait ended first (``.task`` is the task as it was).
        """
        request = task_pb.ExecuteRequest(call=convert.call_to_proto(call))
        request.timeout.FromTimedelta(timedelta(seconds=timeout))
        response = await self._call(self._tasks.Execute, request, wait=timeout)
        task = convert.task_from_proto(response.task)
        if not response.done:
            error = DeadlineExceeded(f"task {task.id} still {task.state} after {timeout:g} s")
            error.task = task
            raise error
        if task.state != "SUCCEEDED":
            raise TaskFailed(task)
        return task.result or convert.result_from_proto(task.id, response.task.result)

    async def submit(self, tool: str, /, **args_and_options: Any) -> str:
        """Queue a tool call; keywords are Call's options and the tool's arguments."""
        return await self.submit_call(Call(tool, **args_and_options))

    async def submit_call(self, call: Call) -> str:
        """Queue a call once it is durably stored; returns the task id."""
        request = task_pb.SubmitRequest(call=convert.call_to_proto(call))
        return (await self._call(self._tasks.Submit, request)).task_id

    async def submit_batch(self, calls: Sequence[Call]) -> list[str]:
        """Queue calls atomically: one invalid call rejects them all (InvalidArgument)."""
        request = task_pb.SubmitBatchRequest(calls=[convert.call_to_proto(c) for c in calls])
        response = await self._call(self._tasks.SubmitBatch, request)
        return [r.task_id for r in response.results]

    async def submit_stream(
        self, calls: Iterable[Call] | AsyncIterable[Call], batch_size: int = 1000
    ) -> AsyncIterator[Ack]:
        """Stream calls in batches and yield one Ack per call; a rejected call stops nothing.

        Acks come batch by batch in call order. An exception raised by ``calls`` is
        re-raised after the acks of the calls it produced.
        """
        outbox = Outbox(batch_size)
        stream = self._tasks.SubmitStream(outbox.requests(calls), metadata=self._conn.metadata)
        try:
            async for response in stream:
                for ack in outbox.acks(response):
                    yield ack
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from exc
        finally:
            stream.cancel()
        for ack in outbox.unsent():
            yield ack
        if outbox.failure is not None:
            raise outbox.failure

    def submit_many(
        self, calls: Iterable[Call] | AsyncIterable[Call], batch_size: int = 1000
    ) -> AsyncIterator[Ack]:
        """The same as submit_stream."""
        return self.submit_stream(calls, batch_size)

    # --- observing and controlling tasks ------------------------------------------------

    async def get(self, task_id: str) -> Task:
        """One task (NotFound if it is unknown)."""
        response = await self._call(self._tasks.GetTask, task_pb.GetTaskRequest(task_id=task_id))
        return convert.task_from_proto(response.task)

    async def get_many(self, task_ids: Sequence[str]) -> list[Task]:
        """The tasks found, in the order asked; unknown ids are left out."""
        request = task_pb.BatchGetTasksRequest(task_ids=task_ids)
        response = await self._call(self._tasks.BatchGetTasks, request)
        return [convert.task_from_proto(t) for t in response.tasks]

    async def wait(self, task_id: str, timeout: float = 60.0) -> Task:
        """The task once it is terminal or ``timeout`` seconds passed (check ``.done``)."""
        request = task_pb.WaitTaskRequest(task_id=task_id)
        request.timeout.FromTimedelta(timedelta(seconds=timeout))
        response = await self._call(self._tasks.WaitTask, request, wait=timeout)
        return convert.task_from_proto(response.task)

    async def watch(self, task_ids: Sequence[str]) -> AsyncIterator[Task]:
        """Each state change of the tasks, until all of them are terminal."""
        request = task_pb.WatchTasksRequest(task_ids=task_ids)
        stream = self._tasks.WatchTasks(request, metadata=self._conn.metadata)
        try:
            async for response in stream:
                yield convert.task_from_proto(response.task)
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from exc
        finally:
            stream.cancel()

    async def cancel(self, task_id: str) -> Task:
        """Cancel a queued or running task (FailedPrecondition if it already finished)."""
        request = task_pb.CancelTaskRequest(task_id=task_id)
        return convert.task_from_proto((await self._call(self._tasks.CancelTask, request)).task)

    async def list_tasks(
        self,
        state: str | Iterable[str] | None = None,
        tool: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[list[Task]]:
        """The caller's tasks, newest first, one page (a list) at a time.

        ``state`` is one state name or several ("queued", "FAILED", ...).
        """
        states = [state] if isinstance(state, str) else list(state or [])
        request = task_pb.ListTasksRequest(
            states=[convert.state_to_proto(s) for s in states],
            tool=tool or "",
            page_size=page_size,
        )
        if created_after is not None:
            request.create_time_after.FromDatetime(created_after)
        if created_before is not None:
            request.create_time_before.FromDatetime(created_before)
        while True:
            response = await self._call(self._tasks.ListTasks, request)
            yield [convert.task_from_proto(t) for t in response.tasks]
            if not response.next_page_token:
                return
            request.page_token = response.next_page_token

    # --- administration -----------------------------------------------------------------

    async def tools(self) -> list[ToolInfo]:
        """Every tool the caller may use, with its argument schema, sorted by name."""
        response = await self._call(self._admin.ListTools, admin_pb.ListToolsRequest())
        return [convert.tool_from_proto(t) for t in response.tools]

    async def queue_stats(self) -> QueueStats:
        """Queue depths per priority, in-flight, delayed and dead counts."""
        request = admin_pb.GetQueueStatsRequest()
        return convert.queue_stats_from_proto(await self._call(self._admin.GetQueueStats, request))

    async def dead_letters(self, page_size: int = 100) -> AsyncIterator[list[Task]]:
        """The DEAD tasks, one page (a list) at a time."""
        request = admin_pb.ListDeadLettersRequest(page_size=page_size)
        while True:
            response = await self._call(self._admin.ListDeadLetters, request)
            yield [convert.task_from_proto(t) for t in response.tasks]
            if not response.next_page_token:
                return
            request.page_token = response.next_page_token

    async def requeue_dead(self, ids: Sequence[str] | None = None) -> int:
        """Requeue the given dead letters, or all of them when ids is None; returns the count."""
        request = admin_pb.RequeueDeadLettersRequest(task_ids=ids or [], all=ids is None)
        return (await self._call(self._admin.RequeueDeadLetters, request)).requeued

    async def cache_stats(self) -> CacheStats:
        """Whether the cache is on, and hits, misses, bytes and entries per tool."""
        request = admin_pb.GetCacheStatsRequest()
        return convert.cache_stats_from_proto(await self._call(self._admin.GetCacheStats, request))

    async def cache_clear(self) -> int:
        """Drop every cached result; returns how many were dropped."""
        request = admin_pb.ClearCacheRequest()
        return (await self._call(self._admin.ClearCache, request)).removed

    async def cache_invalidate(self, path_prefix: str = "", pattern: str = "") -> int:
        """Drop cached results under a path prefix or matching a glob; returns the count."""
        request = admin_pb.InvalidateCacheRequest(path_prefix=path_prefix, pattern=pattern)
        return (await self._call(self._admin.InvalidateCache, request)).removed

    async def reload_config(self) -> ConfigReload:
        """Ask the server to re-read its configuration file."""
        response = await self._call(self._admin.ReloadConfig, admin_pb.ReloadConfigRequest())
        return ConfigReload(reloaded=response.reloaded, message=response.message)
