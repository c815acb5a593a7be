"""WorkerService: lets workers in any language lease, heartbeat and complete tasks."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import grpc
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from clawq.v1 import worker_service_pb2 as ws
from clawq.v1 import worker_service_pb2_grpc as ws_grpc
from clawq_server.api import convert
from clawq_server.api.auth import Authenticator, PrincipalLookup
from clawq_server.api.status import abort
from clawq_server.audit import AuditSink, new_record
from clawq_server.errors import (
    AuditUnavailable,
    ClawqError,
    InvalidArgument,
    LeaseLost,
    PolicyDenied,
)
from clawq_server.model import Completion, Task, TaskState
from clawq_server.model import Lease as TaskLease  # Lease is also an RPC of the servicer
from clawq_server.policy.principal import Principal
from clawq_server.queue.base import TaskQueue, give_back
from clawq_server.submission import PermissionCheck
from clawq_server.worker.runner import completion_for_error

log = logging.getLogger(__name__)
Ctx = grpc.aio.ServicerContext[Any, Any]
DEFAULT_LEASE_S = 30.0
# A lease is renewed by heartbeats; one far in the future would hold a task for good.
MAX_LEASE_S = 3600.0
MAX_WAIT_S = 30.0
MAX_LEASED = 1000
MAX_TOOLS = 1000
MAX_HEARTBEAT = 1000


def _leased(lease: TaskLease) -> ws.LeasedTask:
    expires = Timestamp()
    expires.FromDatetime(lease.expires)
    return ws.LeasedTask(
        task=convert.task_to_proto(lease.task), lease_token=lease.token, lease_expire_time=expires
    )


def _lease_for(message: Message) -> timedelta:
    seconds = convert.seconds_or_none(message, "lease_duration")
    if seconds is None:
        seconds = DEFAULT_LEASE_S
    if not 0 < seconds <= MAX_LEASE_S:
        raise InvalidArgument.field(
            "lease_duration", f"must be more than 0 and at most {MAX_LEASE_S:g} seconds"
        )
    return timedelta(seconds=seconds)


def _tools(principal: Principal, offered: list[str]) -> list[str]:
    """The offered tools the worker's principal may run: it never sees other tasks."""
    if not offered:
        raise InvalidArgument.field("tools", "name at least one tool")
    if len(offered) > MAX_TOOLS:
        raise InvalidArgument.field("tools", f"must name at most {MAX_TOOLS} tools")
    allowed = [tool for tool in offered if principal.may_use(tool)]
    if not allowed:
        raise PolicyDenied.field("tools", f"{principal.name!r} may run none of these tools")
    return allowed


class WorkerServicer(ws_grpc.WorkerServiceServicer):
    """Translates WorkerService RPCs into queue calls; only worker principals may call."""

    def __init__(
        self,
        queue: TaskQueue,
        authenticate: Authenticator,
        audit: AuditSink,
        principals: PrincipalLookup,
        permissions: PermissionCheck,
    ) -> None:
        self._queue = queue
        self._authenticate = authenticate
        self._audit = audit
        self._principals = principals
        self._permissions = permissions

    def _worker(self, context: Ctx) -> Principal:
        principal = self._authenticate(context)
        if not principal.worker:
            raise PolicyDenied("this principal may not act as a worker")
        return principal

    async def Lease(self, request: ws.LeaseRequest, context: Ctx) -> ws.LeaseResponse:
        """Hand out runnable tasks of the offered tools."""
        try:
            tools = _tools(self._worker(context), list(request.tools))
            if not self._audit.accepting:
                raise AuditUnavailable
            if not 1 <= request.max_tasks <= MAX_LEASED:
                raise InvalidArgument.field("max_tasks", f"must be between 1 and {MAX_LEASED}")
            lease_for = _lease_for(request)
            wait = max(convert.seconds_or_none(request, "wait") or 0.0, 0.0)
            remaining = context.time_remaining()
            wait = min(wait, MAX_WAIT_S, (remaining or MAX_WAIT_S) - 0.1)
            leases = await self._queue.lease(
                request.worker_id, tools, request.max_tasks, lease_for, max(wait, 0.0)
            )
            if leases and not self._audit.accepting:  # it failed while this lease waited
                await give_back(self._queue, leases)
                raise AuditUnavailable
            granted = await self._screened(leases)
            return ws.LeaseResponse(tasks=[_leased(lease) for lease in granted])
        except Exception as error:
            await abort(context, error)

    async def _screened(self, leases: list[TaskLease]) -> list[TaskLease]:
        """The leases whose tasks policy still allows. Policy may have changed since a task
        was queued (a reload removed its principal or narrowed what it may do): such a task
        fails here, as in the in-process worker, instead of going to the worker. Whatever
        happens, no lease is left taken and handed to nobody."""
        granted: list[TaskLease] = []
        for index, lease in enumerate(leases):
            try:
                refusal = self._refusal(lease.task)
                if refusal is None:
                    granted.append(lease)
                else:
                    await self._fail(lease, refusal)
            except BaseException:
                await give_back(self._queue, [*granted, *leases[index + 1 :]])
                raise
        return granted

    def _refusal(self, task: Task) -> Completion | None:
        principal = self._principals(task.principal)
        try:
            if principal is None:
                raise PolicyDenied("the task's principal is no longer configured")
            self._permissions(principal, task.tool, dict(task.args))
        except Exception as error:  # a check that fails for any reason fails the task alone
            return completion_for_error(error, rerunnable=False)
        return None

    async def _fail(self, lease: TaskLease, completion: Completion) -> None:
        """Complete a refused task, audited with what became of it."""
        task, error = lease.task, completion.error
        outcome = "UNKNOWN"
        try:
            outcome = (await self._queue.complete(task.id, lease.token, completion)).value
        except LeaseLost:
            outcome = "LEASE_LOST"
        except ClawqError as failure:  # the lease then expires, and the task is screened again
            log.warning("failing %s refused by policy failed: %s", task.id, failure.message)
        finally:
            self._audit.record(
                new_record(
                    task.principal,
                    task.tool,
                    task.args,
                    task_id=task.id,
                    attempt=task.attempt,
                    decision="deny" if error and error.code == "PERMISSION_DENIED" else "allow",
                    reason=error.reason if error else "",
                    outcome=outcome,
                )
            )

    async def Heartbeat(self, request: ws.HeartbeatRequest, context: Ctx) -> ws.HeartbeatResponse:
        """Extend leases; report the lost and the cancelled."""
        try:
            self._worker(context)
            if len(request.leases) > MAX_HEARTBEAT:
                raise InvalidArgument.field("leases", f"must hold at most {MAX_HEARTBEAT} leases")
            outcome = await self._queue.heartbeat(
                [(ref.task_id, ref.lease_token) for ref in request.leases], _lease_for(request)
            )
            return ws.HeartbeatResponse(
                lost_task_ids=sorted(outcome.lost), cancelled_task_ids=sorted(outcome.cancelled)
            )
        except Exception as error:
            await abort(context, error)

    async def Complete(self, request: ws.CompleteRequest, context: Ctx) -> ws.CompleteResponse:
        """Record a task's outcome, fenced by its lease token; audited either way."""
        worker: Principal | None = None
        try:
            worker = self._worker(context)
            state = await self._queue.complete(
                request.lease.task_id, request.lease.lease_token, _completion(request)
            )
            await self._audit_completion(worker, request, state)
            return ws.CompleteResponse(state=convert.STATE_TO_PB[state])
        except Exception as error:
            if worker is not None and isinstance(error, ClawqError):
                self._audit_refusal(worker, request, error)
            await abort(context, error)

    async def _audit_completion(
        self, worker: Principal, request: ws.CompleteRequest, state: TaskState
    ) -> None:
        found = await self._queue.get_many([request.lease.task_id], None)
        task = found[0] if found else None
        error = request.error if request.HasField("error") else None
        self._audit.record(
            new_record(
                task.principal if task else "",
                task.tool if task else "",
                task.args if task else {},
                worker=worker.name,
                task_id=request.lease.task_id,
                attempt=task.attempt if task else 0,
                decision="allow",
                reason=error.reason if error else "",
                outcome=state.value,
            )
        )

    def _audit_refusal(
        self, worker: Principal, request: ws.CompleteRequest, error: ClawqError
    ) -> None:
        self._audit.record(
            new_record(
                worker.name,
                "",
                {},
                task_id=request.lease.task_id[:64],
                decision="deny",
                reason=error.reason,
                message=error.message[:512],
                outcome="REFUSED",
            )
        )


def _completion(request: ws.CompleteRequest) -> Completion:
    """The completion a request carries; InvalidArgument naming what is wrong with it."""
    if not request.lease.task_id or not request.lease.lease_token:
        raise InvalidArgument.field("lease", "task_id and lease_token are required")
    has_result, has_error = request.HasField("result"), request.HasField("error")
    if has_result == has_error:
        raise InvalidArgument.field("result", "give either a result or an error")
    try:
        result = convert.result_from_proto(request.result) if has_result else None
    except InvalidArgument as error:
        raise error.prefixed("result.") from None
    return Completion(
        result=result,
        error=convert.error_from_proto(request.error) if has_error else None,
        retryable=request.retryable,
    )
