"""TaskService: submit, inspect, wait for, cancel and execute tasks."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import math
from collections.abc import AsyncIterator, Sequence
from functools import partial
from typing import Any, cast

import grpc
import orjson

from clawq.v1 import task_pb2 as pb
from clawq.v1 import task_service_pb2 as ts
from clawq.v1 import task_service_pb2_grpc as ts_grpc
from clawq_server.api import convert
from clawq_server.api.auth import Authenticator
from clawq_server.api.encoded import ResultBytes
from clawq_server.api.sized import check_fits, fitting_page
from clawq_server.api.status import abort, to_status
from clawq_server.errors import ClawqError, InvalidArgument
from clawq_server.model import Call, SubmitOutcome, TaskPage, TaskQuery
from clawq_server.policy.principal import Principal
from clawq_server.tasks import Tasks

Ctx = grpc.aio.ServicerContext[Any, Any]
MAX_BATCH = 10_000
STREAM_DEPTH = 4
Outcomes = list[SubmitOutcome | ClawqError]
InFlight = asyncio.Queue[tuple[str, asyncio.Future[Outcomes]] | None]
DEFAULT_WAIT_S = 60.0
log = logging.getLogger(__name__)


def _acks(batch_id: str, outcomes: Outcomes) -> ts.SubmitStreamResponse:
    # Results are added in place: building each and copying it in costs twice as much.
    response = ts.SubmitStreamResponse(batch_id=batch_id)
    add = response.results.add
    for outcome in outcomes:
        if isinstance(outcome, Exception):
            add(error=to_status(outcome))
        else:
            add(task_id=outcome.task_id, existing=outcome.existing)
    return response


def _wait_budget(context: Ctx, requested: float | None) -> float:
    remaining = context.time_remaining()
    limit = DEFAULT_WAIT_S if remaining is None else max(0.0, remaining - 0.05)
    return limit if requested is None else max(0.0, min(requested, limit))


def _requested_timeout(request: ts.WaitTaskRequest | ts.ExecuteRequest) -> float | None:
    value = convert.seconds_or_none(request, "timeout")
    if value is not None and value < 0:
        raise InvalidArgument.field("timeout", "must not be negative")
    return value


def decode_page_token(token: str) -> tuple[float, str] | None:
    """The cursor inside a page token; InvalidArgument when it was not made by us."""
    if not token:
        return None
    try:
        created, task_id = orjson.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        created = task_id = None
    # Exact types: a bool is an int to isinstance(), and float("NaN") parses.
    if type(created) not in (int, float) or not math.isfinite(created) or type(task_id) is not str:
        raise InvalidArgument.field("page_token", "is not a token this server issued")
    return float(created), task_id


def encode_page_token(cursor: tuple[float, str] | None) -> str:
    """The opaque token of a cursor (empty at the end)."""
    return "" if cursor is None else base64.urlsafe_b64encode(orjson.dumps(cursor)).decode()


def _task_page(page: TaskPage) -> ts.ListTasksResponse:
    response = ts.ListTasksResponse(next_page_token=encode_page_token(page.next_cursor))
    convert.add_tasks(response.tasks, page.tasks)
    return response


class TaskServicer(ts_grpc.TaskServiceServicer):
    """Translates TaskService RPCs into Tasks calls and domain errors into statuses."""

    def __init__(self, tasks: Tasks, authenticate: Authenticator) -> None:
        self._tasks = tasks
        self._authenticate = authenticate
        self._encoded = ResultBytes()

    def _call(self, principal: Principal, message: pb.ToolCall) -> Call:
        """The domain call of message; a malformed one is audited and its error raised."""
        try:
            return convert.call_from_proto(message)
        except InvalidArgument as error:
            self._tasks.refused(principal, message.tool, {}, error)
            raise

    def _calls(self, principal: Principal, messages: Sequence[pb.ToolCall]) -> list[Any]:
        """Domain calls, or the InvalidArgument (audited) of each malformed one."""
        out: list[Any] = []
        for message in messages:
            try:
                out.append(self._call(principal, message))
            except InvalidArgument as error:
                out.append(error)
        return out

    def _check_batch(self, principal: Principal, size: int, field: str) -> None:
        """Refuse (and audit) a batch with no calls or more than MAX_BATCH."""
        if size == 0:
            error = InvalidArgument.field(field, "must hold at least one call")
        elif size > MAX_BATCH:
            error = InvalidArgument.field(field, f"must hold at most {MAX_BATCH} calls")
        else:
            return
        self._tasks.refused(principal, "", {"calls": size}, error)
        raise error

    async def Submit(self, request: ts.SubmitRequest, context: Ctx) -> ts.SubmitResponse:
        """Queue one call."""
        try:
            principal = self._authenticate(context)
            try:
                outcome = await self._tasks.submit(principal, self._call(principal, request.call))
            except ClawqError as error:
                raise error.prefixed("call.") from None
            return ts.SubmitResponse(task_id=outcome.task_id, existing=outcome.existing)
        except Exception as error:
            await abort(context, error)

    async def SubmitBatch(
        self, request: ts.SubmitBatchRequest, context: Ctx
    ) -> ts.SubmitBatchResponse:
        """Queue a batch atomically."""
        try:
            principal = self._authenticate(context)
            self._check_batch(principal, len(request.calls), "calls")
            outcomes = await self._tasks.submit_batch(
                principal, self._calls(principal, request.calls)
            )
            return ts.SubmitBatchResponse(
                results=[ts.SubmitResult(task_id=o.task_id, existing=o.existing) for o in outcomes]
            )
        except Exception as error:
            await abort(context, error)

    async def SubmitStream(
        self, request_iterator: AsyncIterator[ts.SubmitStreamRequest], context: Ctx
    ) -> AsyncIterator[ts.SubmitStreamResponse]:
        """Queue batches as they arrive, one ack per batch with per-call results.

        Up to STREAM_DEPTH batches are in flight at once, so admitting batch n+1 overlaps
        with committing batch n; the bounded queue is what slows a fast client down (with
        gRPC flow control behind it), never unbounded buffering. A batch refused as a whole
        (a full queue, the rate limit, a backend error) is acked with that error for each
        call, and the stream goes on. However the stream ends, the handler returns only once
        every batch it started has been stored or refused.
        """
        try:
            self._authenticate(context)
        except Exception as error:
            await abort(context, error)
        in_flight: InFlight = asyncio.Queue(STREAM_DEPTH)
        started: set[asyncio.Future[Outcomes]] = set()
        reader = asyncio.create_task(
            self._read_batches(context, request_iterator, in_flight, started)
        )
        try:
            while (item := await in_flight.get()) is not None:
                batch_id, pending = item
                # Shielded: a cancelled RPC must not cancel a batch that is being stored.
                yield _acks(batch_id, await asyncio.shield(pending))
            await reader
        except Exception as error:
            await abort(context, error)
        finally:
            reader.cancel()
            await asyncio.gather(reader, *started, return_exceptions=True)

    async def _read_batches(
        self,
        context: Ctx,
        requests: AsyncIterator[ts.SubmitStreamRequest],
        in_flight: InFlight,
        started: set[asyncio.Future[Outcomes]],
    ) -> None:
        try:
            async for request in requests:
                # Each batch under the policy of now: a token revoked by a reload, or a
                # changed quota, applies to a stream that was opened before.
                principal = self._authenticate(context)
                self._check_batch(principal, len(request.calls), "calls")
                pending = asyncio.ensure_future(self._submit_each(principal, request.calls))
                started.add(pending)
                pending.add_done_callback(started.discard)
                await in_flight.put((request.batch_id, pending))
        except Exception as error:
            failed: asyncio.Future[Outcomes] = asyncio.get_running_loop().create_future()
            failed.set_exception(error)
            await in_flight.put(("", failed))
        await in_flight.put(None)

    async def _submit_each(self, principal: Principal, messages: Sequence[pb.ToolCall]) -> Outcomes:
        try:
            return await self._tasks.submit_each(principal, self._calls(principal, messages))
        except Exception as error:  # a bug: logged here, answered per call without details
            log.exception("unexpected error storing a stream batch", exc_info=error)
            return [ClawqError("internal error")] * len(messages)

    async def GetTask(self, request: ts.GetTaskRequest, context: Ctx) -> ts.GetTaskResponse:
        """One task of the caller."""
        try:
            principal = self._authenticate(context)
            task = await self._tasks.get(principal, request.task_id)
            return ts.GetTaskResponse(task=convert.task_to_proto(task))
        except Exception as error:
            await abort(context, error)

    async def BatchGetTasks(
        self, request: ts.BatchGetTasksRequest, context: Ctx
    ) -> ts.BatchGetTasksResponse:
        """Many tasks of the caller; unknown ids are listed as missing."""
        try:
            principal = self._authenticate(context)
            if len(request.task_ids) > MAX_BATCH:
                raise InvalidArgument.field("task_ids", f"must hold at most {MAX_BATCH} ids")
            tasks = await self._tasks.get_many(principal, list(request.task_ids))
            response = ts.BatchGetTasksResponse()
            convert.add_tasks(response.tasks, tasks)
            if len(tasks) < len(request.task_ids):
                found = {t.id for t in tasks}
                response.missing_task_ids.extend(i for i in request.task_ids if i not in found)
            check_fits(response)
            return response
        except Exception as error:
            await abort(context, error)

    async def WaitTask(self, request: ts.WaitTaskRequest, context: Ctx) -> ts.WaitTaskResponse:
        """The task once terminal or when the wait ends."""
        try:
            principal = self._authenticate(context)
            budget = _wait_budget(context, _requested_timeout(request))
            task = await self._tasks.wait(principal, request.task_id, budget)
            return ts.WaitTaskResponse(task=convert.task_to_proto(task), done=task.done)
        except Exception as error:
            await abort(context, error)

    async def WatchTasks(
        self, request: ts.WatchTasksRequest, context: Ctx
    ) -> AsyncIterator[ts.WatchTasksResponse]:
        """Stream each state change of the given tasks until all are terminal."""
        try:
            principal = self._authenticate(context)
            if not request.task_ids:
                raise InvalidArgument.field("task_ids", "must name at least one task")
            async for task in self._tasks.watch(principal, list(request.task_ids)):
                self._authenticate(context)  # a caller revoked meanwhile stops watching
                yield ts.WatchTasksResponse(task=convert.task_to_proto(task))
        except Exception as error:
            await abort(context, error)

    async def CancelTask(
        self, request: ts.CancelTaskRequest, context: Ctx
    ) -> ts.CancelTaskResponse:
        """Cancel a queued or running task."""
        try:
            principal = self._authenticate(context)
            task = await self._tasks.cancel(principal, request.task_id)
            return ts.CancelTaskResponse(task=convert.task_to_proto(task))
        except Exception as error:
            await abort(context, error)

    async def ListTasks(self, request: ts.ListTasksRequest, context: Ctx) -> ts.ListTasksResponse:
        """One page of the caller's tasks."""
        try:
            principal = self._authenticate(context)
            return await fitting_page(
                partial(self._tasks.list_tasks, principal),
                self._query(request, principal.name),
                _task_page,
            )
        except Exception as error:
            await abort(context, error)

    async def Execute(self, request: ts.ExecuteRequest, context: Ctx) -> ts.ExecuteResponse:
        """Run one call and wait for its result."""
        try:
            principal = self._authenticate(context)
            try:
                requested = _requested_timeout(request)
            except InvalidArgument as error:
                self._tasks.refused(principal, request.call.tool, {}, error)
                raise
            budget = _wait_budget(context, requested)
            try:
                call = self._call(principal, request.call)
                task = await self._tasks.execute(principal, call, budget)
            except ClawqError as error:
                raise error.prefixed("call.") from None
            if task.result is not None and task.result.cached:
                return cast(ts.ExecuteResponse, self._encoded.execute_response(task))
            return ts.ExecuteResponse(task=convert.task_to_proto(task), done=task.done)
        except Exception as error:
            await abort(context, error)

    @staticmethod
    def _query(request: ts.ListTasksRequest, principal: str) -> TaskQuery:
        if request.page_size < 0:
            raise InvalidArgument.field("page_size", "must not be negative")
        states = frozenset(
            convert.STATE_FROM_PB[s] for s in request.states if s in convert.STATE_FROM_PB
        )
        if len(states) != len(set(request.states)):
            raise InvalidArgument.field("states", "holds an unknown state")
        return TaskQuery(
            principal=principal,
            states=states,
            tool=request.tool,
            created_after=convert.timestamp_or_none(request, "create_time_after"),
            created_before=convert.timestamp_or_none(request, "create_time_before"),
            limit=min(request.page_size or 50, 1000),
            cursor=decode_page_token(request.page_token),
        )
