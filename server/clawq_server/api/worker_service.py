"""WorkerService: lets workers in any language lease, heartbeat and complete tasks."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from clawq.v1 import worker_service_pb2 as ws
from clawq.v1 import worker_service_pb2_grpc as ws_grpc
from clawq_server.api import convert
from clawq_server.api.auth import Authenticator
from clawq_server.api.status import abort
from clawq_server.errors import InvalidArgument, PolicyDenied
from clawq_server.model import Completion, Lease
from clawq_server.queue.base import TaskQueue

Ctx = grpc.aio.ServicerContext[Any, Any]
DEFAULT_LEASE_S = 30.0
MAX_WAIT_S = 30.0
MAX_LEASED = 1000


def _leased(lease: Lease) -> ws.LeasedTask:
    expires = Timestamp()
    expires.FromDatetime(lease.expires)
    return ws.LeasedTask(
        task=convert.task_to_proto(lease.task), lease_token=lease.token, lease_expire_time=expires
    )


def _lease_for(seconds: float) -> timedelta:
    if seconds <= 0:
        raise InvalidArgument.field("lease_duration", "must be positive")
    return timedelta(seconds=seconds)


class WorkerServicer(ws_grpc.WorkerServiceServicer):
    """Translates WorkerService RPCs into queue calls; only worker principals may call."""

    def __init__(self, queue: TaskQueue, authenticate: Authenticator) -> None:
        self._queue = queue
        self._authenticate = authenticate

    def _check_worker(self, context: Ctx) -> None:
        if not self._authenticate(context).worker:
            raise PolicyDenied("this principal may not act as a worker")

    async def Lease(self, request: ws.LeaseRequest, context: Ctx) -> ws.LeaseResponse:
        """Hand out runnable tasks of the offered tools."""
        try:
            self._check_worker(context)
            if not request.tools:
                raise InvalidArgument.field("tools", "name at least one tool")
            if not 1 <= request.max_tasks <= MAX_LEASED:
                raise InvalidArgument.field("max_tasks", "must be between 1 and 1000")
            lease_for = _lease_for(
                convert.seconds(
                    request.lease_duration if request.HasField("lease_duration") else None,
                    DEFAULT_LEASE_S,
                )
            )
            wait = convert.seconds(request.wait if request.HasField("wait") else None, 0.0)
            remaining = context.time_remaining()
            wait = min(max(wait, 0.0), MAX_WAIT_S, (remaining or MAX_WAIT_S) - 0.1)
            leases = await self._queue.lease(
                request.worker_id, list(request.tools), request.max_tasks, lease_for, max(wait, 0.0)
            )
            return ws.LeaseResponse(tasks=[_leased(lease) for lease in leases])
        except Exception as error:
            await abort(context, error)

    async def Heartbeat(self, request: ws.HeartbeatRequest, context: Ctx) -> ws.HeartbeatResponse:
        """Extend leases; report the lost and the cancelled."""
        try:
            self._check_worker(context)
            lease_for = _lease_for(
                convert.seconds(
                    request.lease_duration if request.HasField("lease_duration") else None,
                    DEFAULT_LEASE_S,
                )
            )
            outcome = await self._queue.heartbeat(
                [(ref.task_id, ref.lease_token) for ref in request.leases], lease_for
            )
            return ws.HeartbeatResponse(
                lost_task_ids=sorted(outcome.lost), cancelled_task_ids=sorted(outcome.cancelled)
            )
        except Exception as error:
            await abort(context, error)

    async def Complete(self, request: ws.CompleteRequest, context: Ctx) -> ws.CompleteResponse:
        """Record a task's outcome, fenced by its lease token."""
        try:
            self._check_worker(context)
            if not request.lease.task_id or not request.lease.lease_token:
                raise InvalidArgument.field("lease", "task_id and lease_token are required")
            completion = Completion(
                result=convert.result_from_proto(request.result)
                if request.HasField("result")
                else None,
                error=convert.error_from_proto(request.error)
                if request.HasField("error")
                else None,
                retryable=request.retryable,
            )
            if completion.result is None and completion.error is None:
                raise InvalidArgument.field("result", "give a result or an error")
            state = await self._queue.complete(
                request.lease.task_id, request.lease.lease_token, completion
            )
            return ws.CompleteResponse(state=convert.STATE_TO_PB[state])
        except Exception as error:
            await abort(context, error)
