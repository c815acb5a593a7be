"""The domain error tree. Each error carries its wire reason; api/status.py maps them to gRPC.

ClawqError
├── InvalidArgument          (INVALID_ARGUMENT; field violations name the fields)
├── NotFound                 (NOT_FOUND)
├── IdempotencyKeyReused     (ALREADY_EXISTS)
├── TaskAlreadyFinished      (FAILED_PRECONDITION)
├── PolicyDenied             (PERMISSION_DENIED)
├── Unauthenticated          (UNAUTHENTICATED)
├── ResourceExhausted        (RESOURCE_EXHAUSTED, retry_after)
├── BackendUnavailable       (UNAVAILABLE, retry_after)
├── LeaseLost                (ABORTED)
└── ToolFailure              (a tool's own failure: becomes a FAILED task, not an RPC error)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field: its path in the request (e.g. ``calls[3].args.path``) and why."""

    field: str
    description: str


class ClawqError(Exception):
    """Base of every error clawq raises on purpose; violations name the request's fields
    at fault, when there are any."""

    reason = "INTERNAL"
    retryable = False

    def __init__(
        self,
        message: str,
        violations: Sequence[FieldViolation] = (),
        *,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.violations = list(violations)
        if reason is not None:
            self.reason = reason

    @classmethod
    def field(cls, name: str, description: str, *, reason: str | None = None) -> Self:
        """An error about one field."""
        return cls(f"{name}: {description}", [FieldViolation(name, description)], reason=reason)

    def prefixed(self, prefix: str) -> Self:
        """The same error with every field path put under prefix (e.g. ``calls[3].``)."""
        if not self.violations:
            return self
        # Not copy.copy: it calls __init__ again, which some errors' signatures refuse.
        moved = type(self).__new__(type(self), *self.args)
        moved.__dict__.update(self.__dict__)
        moved.violations = [
            FieldViolation(prefix + v.field, v.description) for v in self.violations
        ]
        return moved


class InvalidArgument(ClawqError):
    """The request is malformed; field_violations say where."""

    reason = "INVALID_ARGUMENT"


class NotFound(ClawqError):
    """The task or tool does not exist (or is not the caller's)."""

    reason = "TASK_NOT_FOUND"


class IdempotencyKeyReused(ClawqError):
    """The idempotency key was already used with other arguments."""

    reason = "IDEMPOTENCY_KEY_REUSED"
    task_id = ""  # the task whose key clashed, so the API can name its call

    @classmethod
    def of(cls, key: str, task_id: str) -> IdempotencyKeyReused:
        """The error of task_id's key, named as the call's idempotency_key field."""
        error = cls.field("idempotency_key", f"{key!r} was used with other arguments")
        error.task_id = task_id
        return error


class TaskAlreadyFinished(ClawqError):
    """The task is terminal, so it cannot be cancelled."""

    reason = "TASK_ALREADY_FINISHED"


class PolicyDenied(ClawqError):
    """Policy forbids the call."""

    reason = "POLICY_DENIED"


class Unauthenticated(ClawqError):
    """No or bad credentials."""

    reason = "UNAUTHENTICATED"


class ResourceExhausted(ClawqError):
    """The queue is full or the caller is over its rate; try again after retry_after seconds
    (None: the same request will not fit later either)."""

    reason = "QUEUE_FULL"
    retryable = True

    def __init__(
        self, message: str, *, retry_after: float | None, reason: str | None = None
    ) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = retry_after


class BackendUnavailable(ClawqError):
    """Redis or SQLite cannot be reached.

    maybe_applied: a write was sent and its reply lost, so it may have taken effect (a
    submission may be stored: retry it with the same idempotency key). Its reason is
    OUTCOME_UNKNOWN, so clients can tell.
    """

    reason = "BACKEND_UNAVAILABLE"
    retryable = True

    def __init__(
        self, message: str, *, retry_after: float = 1.0, maybe_applied: bool = False
    ) -> None:
        super().__init__(message, reason="OUTCOME_UNKNOWN" if maybe_applied else None)
        self.retry_after = retry_after
        self.maybe_applied = maybe_applied


class BackendFull(BackendUnavailable):
    """The backend is out of memory (Redis at maxmemory with noeviction): nothing was written."""

    reason = "BACKEND_FULL"

    def __init__(self) -> None:
        super().__init__("the queue backend is out of memory; nothing was written")


class AuditUnavailable(BackendUnavailable):
    """The audit log is not being written: no call is taken until it is again."""

    reason = "AUDIT_UNAVAILABLE"

    def __init__(self) -> None:
        super().__init__("the audit log cannot be written now; nothing was taken")


class LeaseLost(ClawqError):
    """The lease expired or was taken over; the completion is refused."""

    reason = "LEASE_LOST"


class ToolFailure(ClawqError):
    """A tool could not do what was asked; the task ends FAILED with this code and reason.

    code is a canonical status name such as NOT_FOUND or PERMISSION_DENIED.
    """

    def __init__(self, code: str, reason: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message, reason=reason)
        self.code = code
        self.retryable = retryable
