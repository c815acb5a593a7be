"""The worker's half of the Redis queue: leasing ready tasks, heartbeats, completions."""

from __future__ import annotations

import secrets
import time
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from clawq_server.errors import LeaseLost
from clawq_server.model import Completion, HeartbeatOutcome, Lease, RetryPolicy, TaskState
from clawq_server.queue.coalescer import Coalescer
from clawq_server.queue.drained import Drained, tool_key
from clawq_server.queue.redis_args import CompleteItem, complete_args
from clawq_server.queue.redis_codec import entry_order, pairs, to_task
from clawq_server.queue.redis_events import Events
from clawq_server.queue.redis_scripts import ScriptCalls, Scripts


class RedisLeases:
    """Lease, heartbeat, complete and release on a Redis queue (see queue/base.py)."""

    def __init__(
        self,
        call: ScriptCalls,
        scripts: Scripts,
        events: Events,
        retry: RetryPolicy,
        poll_s: float,
    ) -> None:
        self._call = call
        self._scripts = scripts
        self._events = events
        self._retry = retry
        self._drained = Drained(poll_s)
        # Completions of concurrent callers (a worker's parallel tasks) share script calls.
        self._completions: Coalescer[CompleteItem, TaskState] = Coalescer(self._complete_many)

    async def drain(self) -> None:
        """Wait for completions already handed over."""
        await self._completions.drain()

    async def lease(
        self,
        worker_id: str,
        tools: Collection[str] | None,
        limit: int,
        lease_for: timedelta,
        wait: float = 0.0,
    ) -> list[Lease]:
        """Claim up to limit ready tasks, waiting up to wait seconds for one."""
        if limit <= 0 or (tools is not None and not tools):
            return []
        deadline = time.monotonic() + max(wait, 0.0)
        names = sorted(set(tools)) if tools is not None else None
        tool_args: list[Any] = [-1] if names is None else [len(names), *names]
        key = tool_key(tools)
        await self._drained.settle(key, wait)
        while True:
            signal = self._events.work  # replaced on every notification, so none is missed
            now = time.time()
            token = secrets.token_hex(16)
            expires = now + lease_for.total_seconds()
            args = [worker_id, limit, token, repr(expires), *tool_args]
            reply = await self._call(self._scripts.lease, args, now=now)
            due = float(reply[0]) if reply[0] else None
            remaining = deadline - time.monotonic()
            if len(reply) > 1 or remaining <= 0:
                self._drained.leased(key, signal, due, len(reply) - 1, limit)
                until = datetime.fromtimestamp(expires, UTC)
                held = [(to_task(f), entry_order(f)) for f in map(pairs, reply[1:])]
                held.sort(key=lambda pair: (-pair[0].priority, pair[1]))
                return [Lease(task=task, token=token, expires=until) for task, _ in held]
            await self._drained.idle(signal, remaining, due)

    async def heartbeat(
        self, leases: Sequence[tuple[str, str]], lease_for: timedelta
    ) -> HeartbeatOutcome:
        """Extend leases; report lost ones and ones whose task was cancelled."""
        if not leases:
            return HeartbeatOutcome()
        now = time.time()
        args: list[Any] = [repr(now + lease_for.total_seconds())]
        for task_id, token in leases:
            args.extend((task_id, token))
        lost, cancelled = await self._call(self._scripts.heartbeat, args, now=now)
        return HeartbeatOutcome(
            lost=frozenset(raw.decode() for raw in lost),
            cancelled=frozenset(raw.decode() for raw in cancelled),
        )

    async def complete(self, task_id: str, token: str, completion: Completion) -> TaskState:
        """Record a leased task's outcome, fenced by its token.

        Completions made concurrently are written by one script call.
        """
        return await self._completions((task_id, token, completion))

    async def _complete_many(self, items: list[CompleteItem]) -> list[TaskState | Exception]:
        replies = await self._call(self._scripts.complete, complete_args(items, self._retry))
        return [
            LeaseLost(f"task {task_id} is no longer leased with this token")
            if reply == b"LOST"
            else TaskState(reply.decode())
            for (task_id, _, _), reply in zip(items, replies, strict=True)
        ]

    async def release(self, task_id: str, token: str) -> None:
        """Give a leased task back without counting the attempt."""
        if await self._call(self._scripts.release, [task_id, token]) == b"LOST":
            raise LeaseLost(f"task {task_id} is no longer leased with this token")
