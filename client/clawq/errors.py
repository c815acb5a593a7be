"""The client's exceptions, and the one place gRPC errors are translated into them.

Exception tree::

    Exception
    ├── Error                    an RPC failed; carries the status and its google.rpc details
    │   ├── InvalidArgument      bad request or tool arguments (see .field_violations)
    │   ├── NotFound             unknown task or tool
    │   ├── AlreadyExists        idempotency key reused with other arguments
    │   ├── FailedPrecondition   e.g. cancelling a finished task
    │   ├── PermissionDenied     the policy denies the call
    │   ├── ResourceExhausted    queue full or rate limited (see .retry_after)
    │   ├── Unauthenticated      no or bad credentials
    │   ├── Unavailable          server or backend unreachable (see .retry_after)
    │   ├── DeadlineExceeded     the RPC deadline, or execute()'s wait, ended first (.task)
    │   ├── Aborted              concurrent update or stale lease
    │   └── Internal             a bug on the server
    └── TaskFailed               a task ended FAILED, DEAD or CANCELLED (not an RPC error)

Status codes without a class of their own (CANCELLED, UNKNOWN, UNIMPLEMENTED, ...) raise
the base ``Error``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

if TYPE_CHECKING:
    from clawq.types import Task

_CODES_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}
_LOCAL_SEND_FAILURE = "Internal error from Core"


class Error(Exception):
    """An RPC failed with a gRPC status.

    Attributes:
        code: The gRPC status code.
        message: The server's message.
        reason: The ErrorInfo reason (UPPER_SNAKE), or "" when the server sent none.
        metadata: The ErrorInfo metadata.
        field_violations: (field, description) pairs from BadRequest details.
        retry_after: Seconds to wait before retrying, from RetryInfo, or None.
    """

    default_code = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
        field_violations: list[tuple[str, str]] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code if code is not None else self.default_code
        self.reason = reason
        self.metadata = dict(metadata or {})
        self.field_violations = list(field_violations or [])
        self.retry_after = retry_after

    def __str__(self) -> str:
        head = f"{self.code.name}"
        if self.reason:
            head += f" ({self.reason})"
        text = f"{head}: {self.message}"
        # Servers often repeat a violation in the message; show only what it does not say.
        extra = [(f, d) for f, d in self.field_violations if d not in self.message]
        if extra:
            text += " [" + "; ".join(f"{f}: {d}" for f, d in extra) + "]"
        return text


class InvalidArgument(Error):
    """The request or a tool call's arguments are invalid."""

    default_code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(Error):
    """The task or tool does not exist (or belongs to another principal)."""

    default_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(Error):
    """The idempotency key was already used with other arguments."""

    default_code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(Error):
    """The request does not fit the current state, e.g. cancelling a finished task."""

    default_code = grpc.StatusCode.FAILED_PRECONDITION


class PermissionDenied(Error):
    """The policy denies the call."""

    default_code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(Error):
    """The queue is full or the caller is rate limited; see retry_after."""

    default_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unauthenticated(Error):
    """No credentials, or credentials the server does not accept."""

    default_code = grpc.StatusCode.UNAUTHENTICATED


class Unavailable(Error):
    """The server or one of its backends cannot be reached; see retry_after."""

    default_code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(Error):
    """The deadline passed first; ``task`` is set when execute()'s wait ended before the task."""

    default_code = grpc.StatusCode.DEADLINE_EXCEEDED
    task: Task | None = None


class Aborted(Error):
    """A concurrent update or stale lease aborted the request."""

    default_code = grpc.StatusCode.ABORTED


class Internal(Error):
    """The server hit a bug."""

    default_code = grpc.StatusCode.INTERNAL


class TaskFailed(Exception):
    """A task ended FAILED, DEAD or CANCELLED.

    Attributes:
        task: The task as it ended.
        code: The canonical status name of its error, e.g. "NOT_FOUND" ("" if none).
        reason: The machine-readable reason, e.g. "FILE_NOT_FOUND" ("" if none).
        message: The human-readable message.
    """

    def __init__(self, task: Task) -> None:
        error = task.error
        self.task = task
        self.code = error.code if error else ""
        self.reason = error.reason if error else ""
        self.message = error.message if error else f"task ended {task.state}"
        super().__init__(f"task {task.id} {task.state}: {self.reason or self.code}: {self.message}")


_CLASSES: dict[grpc.StatusCode, type[Error]] = {
    cls.default_code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        PermissionDenied,
        ResourceExhausted,
        Unauthenticated,
        Unavailable,
        DeadlineExceeded,
        Aborted,
        Internal,
    )
}


def error_class(code: grpc.StatusCode) -> type[Error]:
    """The exception class for a status code (Error itself when none is more specific)."""
    return _CLASSES.get(code, Error)


def from_status(status: status_pb2.Status) -> Error:
    """An Error from a google.rpc.Status, decoding its ErrorInfo, BadRequest and RetryInfo."""
    code = _CODES_BY_NUMBER.get(status.code, grpc.StatusCode.UNKNOWN)
    reason = ""
    metadata: dict[str, str] = {}
    violations: list[tuple[str, str]] = []
    retry_after: float | None = None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, metadata = info.reason, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations += [(v.field, v.description) for v in bad.field_violations]
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_after = retry.retry_delay.ToTimedelta().total_seconds()
    return error_class(code)(
        status.message,
        code=code,
        reason=reason,
        metadata=metadata,
        field_violations=violations,
        retry_after=retry_after,
    )


def from_rpc_error(exc: grpc.aio.AioRpcError) -> Error:
    """Translate a failed call into an Error; the boundary every RPC goes through."""
    try:
        status = rpc_status.from_call(exc)
    except ValueError:
        # Details that contradict the call's own status are ignored rather than trusted.
        status = None
    if status is None:
        code = exc.code()
        if code == grpc.StatusCode.INTERNAL and exc.details() == _LOCAL_SEND_FAILURE:
            # grpc's own report of a message it could not send because the connection
            # broke (grpc/grpc#36066), not a server's answer: the server is unreachable.
            code = grpc.StatusCode.UNAVAILABLE
        return error_class(code)(exc.details() or code.name, code=code)
    return from_status(status)
