"""Builders and waits shared by the queue behaviour suite."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import orjson

from clawq_server.model import NewTask, RetryPolicy, SideEffect, utcnow
from clawq_server.queue.base import TaskQueue

T = TypeVar("T")

READ_ONLY_TOOLS = frozenset({"read_file", "list_directory"})

# Opens a queue of the backend under test; keyword arguments are QueueOptions fields.
MakeQueue = Callable[..., Awaitable[TaskQueue]]


@dataclass(frozen=True, slots=True)
class QueueOptions:
    """What a test may ask of the queue under test; short delays keep the suite fast."""

    retry: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(
            default_max_attempts=3,
            base_delay=timedelta(milliseconds=10),
            max_delay=timedelta(milliseconds=40),
        )
    )
    max_queued: int = 0


def new_task(
    tool: str = "read_file",
    *,
    principal: str = "alice",
    args: dict[str, Any] | None = None,
    key: str = "",
    priority: int = 0,
    delay: float = 0.0,
    max_attempts: int = 3,
    idempotent: bool = False,
    task_id: str | None = None,
) -> NewTask:
    """A NewTask as the server would build it; the side effect follows the tool."""
    args_json = orjson.dumps(args if args is not None else {"path": "a.txt"})
    now = utcnow()
    return NewTask(
        id=task_id or uuid.uuid4().hex,
        principal=principal,
        tool=tool,
        args_json=args_json,
        args_hash=hashlib.sha256(args_json).hexdigest(),
        side_effect=SideEffect.READ_ONLY if tool in READ_ONLY_TOOLS else SideEffect.WRITE,
        idempotency_key=key,
        priority=priority,
        max_attempts=max_attempts,
        idempotent=idempotent,
        created=now,
        not_before=now + timedelta(seconds=delay),
    )


async def eventually(
    probe: Callable[[], Awaitable[T]], until: Callable[[T], bool], within: float = 5.0
) -> T:
    """Calls probe until its value satisfies until, failing after within seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s; last value {value!r}")
        await asyncio.sleep(0.02)
