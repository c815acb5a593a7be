"""Domain types shared by every concern: tasks, calls, results, leases. No protobuf here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple

JsonObject = Mapping[str, Any]


class TaskState(StrEnum):
    """Where a task is in its life."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    DEAD = "DEAD"


TERMINAL_STATES = frozenset(
    {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED, TaskState.DEAD}
)


class SideEffect(StrEnum):
    """What running a tool may change; decides redelivery after a lost worker."""

    READ_ONLY = "read_only"
    WRITE = "write"


def utcnow() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


def from_epoch(seconds: float | None) -> datetime | None:
    """An aware UTC datetime from epoch seconds (None stays None)."""
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


NO_DELAY = timedelta(0)


class Call(NamedTuple):
    """A tool call as the caller asked for it (a NamedTuple: built per call of a batch)."""

    tool: str
    args: JsonObject
    idempotency_key: str = ""
    priority: int = 0
    delay: timedelta = NO_DELAY
    max_attempts: int = 0
    idempotent: bool = False


class NewTask(NamedTuple):
    """A task ready to be stored: the call plus everything the server decided about it.

    A NamedTuple rather than a frozen dataclass: thousands are built per batch, and a
    tuple is several times cheaper to construct.
    """

    id: str
    principal: str
    tool: str
    args_json: bytes
    args_hash: str  # compares reuses of an idempotency key; "" without one
    side_effect: SideEffect
    idempotency_key: str
    priority: int
    max_attempts: int
    idempotent: bool
    created: datetime
    not_before: datetime


@dataclass(frozen=True, slots=True, weakref_slot=True)
class ToolResult:
    """What a tool produced.

    Weakly referenceable: what is derived from a cached result is kept while it lives.
    """

    output: bytes = b""
    truncated: bool = False
    stderr: bytes = b""
    stderr_truncated: bool = False
    exit_code: int | None = None
    signal: int = 0
    payload: JsonObject | None = None
    cached: bool = False


@dataclass(frozen=True, slots=True)
class TaskError:
    """Why a task did not succeed: a canonical code name, a reason and a message."""

    code: str
    reason: str
    message: str


class Task(NamedTuple):
    """A stored task.

    A NamedTuple rather than a frozen dataclass: reads convert rows by the thousand, and
    a frozen dataclass spends more on its __init__ than the row costs to fetch.
    """

    id: str
    principal: str
    tool: str
    args: JsonObject
    state: TaskState
    side_effect: SideEffect
    attempt: int
    max_attempts: int
    priority: int
    idempotency_key: str
    idempotent: bool
    created: datetime
    not_before: datetime
    started: datetime | None = None
    finished: datetime | None = None
    result: ToolResult | None = None
    error: TaskError | None = None

    @property
    def done(self) -> bool:
        """True when the task is in a terminal state."""
        return self.state in TERMINAL_STATES


class SubmitOutcome(NamedTuple):
    """The acknowledgement of one stored call (a NamedTuple: built per call of a batch)."""

    task_id: str
    existing: bool = False


@dataclass(frozen=True, slots=True)
class Lease:
    """A task handed to a worker, with the token that fences its completion."""

    task: Task
    token: str
    expires: datetime


@dataclass(frozen=True, slots=True)
class Completion:
    """The outcome a worker reports for a leased task: a result or an error."""

    result: ToolResult | None = None
    error: TaskError | None = None
    retryable: bool = False


@dataclass(frozen=True, slots=True)
class HeartbeatOutcome:
    """Leases a worker must give up: lost ones and ones whose task was cancelled."""

    lost: frozenset[str] = frozenset()
    cancelled: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """Filters and paging of ListTasks; cursor is the backend's own position marker."""

    principal: str | None
    states: frozenset[TaskState] = frozenset()
    tool: str = ""
    created_after: datetime | None = None
    created_before: datetime | None = None
    limit: int = 50
    cursor: tuple[float, str] | None = None


@dataclass(frozen=True, slots=True)
class TaskPage:
    """One page of tasks and the cursor of the next (None at the end)."""

    tasks: list[Task]
    next_cursor: tuple[float, str] | None


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Queue depths and counts."""

    ready_by_priority: dict[int, int] = field(default_factory=dict)
    in_flight: int = 0
    delayed: int = 0
    dead: int = 0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries of retryable failures: exponential backoff with full jitter."""

    default_max_attempts: int = 3
    base_delay: timedelta = timedelta(seconds=1)
    max_delay: timedelta = timedelta(minutes=5)


def finished_task(task: NewTask, args: JsonObject, result: ToolResult) -> Task:
    """task as having succeeded at once with result (a call answered without a worker)."""
    now = utcnow()
    return Task(
        id=task.id,
        principal=task.principal,
        tool=task.tool,
        args=args,
        state=TaskState.SUCCEEDED,
        side_effect=task.side_effect,
        attempt=1,
        max_attempts=task.max_attempts,
        priority=task.priority,
        idempotency_key=task.idempotency_key,
        idempotent=task.idempotent,
        created=task.created,
        not_before=task.not_before,
        started=now,
        finished=now,
        result=result,
    )
