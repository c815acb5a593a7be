"""The client's plain data types: calls in, tasks, results, acks and admin figures out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from clawq.errors import Error

#: Task states, as the strings Task.state holds.
TASK_STATES = ("QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "DEAD")
#: The states a task never leaves.
TERMINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "DEAD"})


@dataclass(frozen=True, slots=True, init=False)
class Call:
    """One tool call to submit.

    ``Call("read_file", path="a.txt", idempotency_key="k1")``: the tool name comes first,
    options are keywords, and every other keyword is a tool argument. Use ``Call.of`` when
    an argument's name collides with an option's.

    Attributes:
        tool: The tool's name.
        args: The tool's arguments.
        idempotency_key: Same key, same task: the call never runs twice ("" for none).
        priority: Higher runs first, from -10 to 10.
        delay: Do not run before this much time has passed (None: at once).
        max_attempts: Attempts before a retryable failure makes the task DEAD (0: default).
        idempotent: The call is safe to run more than once after a lost worker.
    """

    tool: str
    args: Mapping[str, Any]
    idempotency_key: str
    priority: int
    delay: timedelta | None
    max_attempts: int
    idempotent: bool

    def __init__(
        self,
        tool: str,
        /,
        *,
        idempotency_key: str = "",
        priority: int = 0,
        delay: float | timedelta | None = None,
        max_attempts: int = 0,
        idempotent: bool = False,
        **args: Any,
    ) -> None:
        if isinstance(delay, int | float):
            delay = timedelta(seconds=delay)
        for name, value in (
            ("tool", tool),
            ("args", args),
            ("idempotency_key", idempotency_key),
            ("priority", priority),
            ("delay", delay),
            ("max_attempts", max_attempts),
            ("idempotent", idempotent),
        ):
            object.__setattr__(self, name, value)

    @classmethod
    def of(cls, tool: str, args: Mapping[str, Any], **options: Any) -> Call:
        """A call from an argument mapping, whatever its keys are named."""
        call = cls(tool, **options)
        object.__setattr__(call, "args", dict(args))
        return call


@dataclass(frozen=True, slots=True)
class Result:
    """What a successful task produced.

    Attributes:
        task_id: The task that produced it.
        data: The raw output (file content, or a command's stdout).
        stderr_data: The raw standard error of a command or Python run.
        truncated: True when data was cut at the output cap.
        stderr_truncated: True when stderr_data was cut at the cap.
        exit_code: A process's exit status; None for file tools.
        signal: The signal that ended a process, or 0.
        payload: Structured output (directory entries, bytes written, plugin output).
        cached: True when the result came from the cache without running the tool.
    """

    task_id: str = ""
    data: bytes = b""
    stderr_data: bytes = b""
    truncated: bool = False
    stderr_truncated: bool = False
    exit_code: int | None = None
    signal: int = 0
    payload: dict[str, Any] = field(default_factory=dict)
    cached: bool = False

    @property
    def output(self) -> str:
        """The output as text (UTF-8, invalid bytes replaced)."""
        return self.data.decode("utf-8", errors="replace")

    @property
    def stderr(self) -> str:
        """Standard error as text (UTF-8, invalid bytes replaced)."""
        return self.stderr_data.decode("utf-8", errors="replace")


@dataclass(frozen=True, slots=True)
class TaskError:
    """Why a task did not succeed: a canonical code name, a reason and a message."""

    code: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Task:
    """A submitted call and everything known about its execution.

    Attributes:
        id: Server-assigned identifier.
        tool: The tool's name.
        args: The arguments as submitted (only those set).
        state: One of TASK_STATES, e.g. "QUEUED" or "SUCCEEDED".
        attempt: Number of the current or last attempt (0 before the first lease).
        max_attempts: Attempts allowed before the task goes DEAD.
        priority: Scheduling priority; higher runs first.
        idempotency_key: The key it was submitted with ("" for none).
        idempotent: Whether the submitter marked the call safe to repeat.
        created, not_before, started, finished: Aware UTC datetimes (None when unset).
        result: What the tool produced, when it ran.
        error: Why the task failed, when it did.
    """

    id: str
    tool: str
    args: dict[str, Any]
    state: str
    attempt: int = 0
    max_attempts: int = 0
    priority: int = 0
    idempotency_key: str = ""
    idempotent: bool = False
    created: datetime | None = None
    not_before: datetime | None = None
    started: datetime | None = None
    finished: datetime | None = None
    result: Result | None = None
    error: TaskError | None = None

    @property
    def done(self) -> bool:
        """True when the task is in a terminal state."""
        return self.state in TERMINAL_STATES


@dataclass(frozen=True, slots=True)
class Ack:
    """The server's answer to one call of a stream.

    Attributes:
        index: Position of the call in the submitted iterable, from 0.
        task_id: The task's identifier; "" when the call was rejected.
        existing: True when the idempotency key matched an existing task.
        error: Why the call was rejected, or None when it was accepted.
    """

    index: int
    task_id: str
    existing: bool = False
    error: Error | None = None

    @property
    def accepted(self) -> bool:
        """True when the call became (or matched) a task."""
        return self.error is None


@dataclass(frozen=True, slots=True)
class ToolInfo:
    """A tool the server offers.

    Attributes:
        name: The name to call it by.
        description: What it does.
        side_effect: "READ_ONLY" or "WRITE".
        schema: JSON Schema of its arguments.
        cacheable: True when its results may be served from the cache.
    """

    name: str
    description: str
    side_effect: str
    schema: dict[str, Any]
    cacheable: bool


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Queue depths and counts.

    Attributes:
        ready_by_priority: Ready tasks per priority level, highest first.
        in_flight: Tasks leased by workers.
        delayed: Tasks waiting for their not_before time.
        dead: Dead letters.
    """

    ready_by_priority: dict[int, int]
    in_flight: int
    delayed: int
    dead: int

    @property
    def ready(self) -> int:
        """Ready tasks at every priority."""
        return sum(self.ready_by_priority.values())


@dataclass(frozen=True, slots=True)
class ToolCacheStats:
    """The cache figures of one tool."""

    tool: str
    hits: int
    misses: int
    hit_ratio: float
    bytes: int
    entries: int
    evictions: int


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Whether the cache is on, and its figures per tool."""

    enabled: bool
    tools: list[ToolCacheStats]


@dataclass(frozen=True, slots=True)
class ConfigReload:
    """The outcome of a configuration reload: in force, or refused with a message."""

    reloaded: bool
    message: str
