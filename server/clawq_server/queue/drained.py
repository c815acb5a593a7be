"""What the last lease that emptied the queue saw, so the next one need not ask again."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Collection

ToolKey = frozenset[str] | None
MAX_NOTES = 64


def tool_key(tools: Collection[str] | None) -> ToolKey:
    """The key of a lease's tool filter (None: every tool)."""
    return None if tools is None else frozenset(tools)


class Drained:
    """Per tool filter: the work signal a lease that got fewer tasks than it asked for was
    made under, and when a task may next fall due (a delayed task, an expiring lease).

    That lease took every ready task of its tools. Until the signal is set (new, requeued
    or released work) or the due time passes, the backend has nothing more for them: the
    next lease waits for either before asking, instead of spending a round trip (and the
    CPU of the worker that has just started what it got) on an empty answer.
    """

    def __init__(self, poll_s: float) -> None:
        self._poll_s = poll_s
        # (signal, due, noted at): a note older than poll_s is not trusted (a wait that
        # long re-reads anyway). Bounded: any worker may lease under any tool filter.
        self._seen: dict[ToolKey, tuple[asyncio.Event, float | None, float]] = {}

    def note(self, key: ToolKey, signal: asyncio.Event, due: float | None) -> None:
        """A lease under signal found no more ready tasks of key's tools."""
        self._seen.pop(key, None)
        self._seen[key] = (signal, due, time.monotonic())
        if len(self._seen) > MAX_NOTES:
            del self._seen[next(iter(self._seen))]

    def forget(self, key: ToolKey) -> None:
        """A lease got all it asked for: there may be more."""
        self._seen.pop(key, None)

    def leased(
        self, key: ToolKey, signal: asyncio.Event, due: float | None, got: int, limit: int
    ) -> None:
        """A lease under signal got `got` of its `limit` tasks: noted if it emptied the queue."""
        if got < limit:
            self.note(key, signal, due)
        else:
            self.forget(key)

    async def settle(self, key: ToolKey, wait: float) -> None:
        """Wait, at most wait seconds, until asking the backend again may find a task."""
        seen = self._seen.pop(key, None)
        if seen is None or wait <= 0:
            return
        signal, due, noted = seen
        pause = min(wait, noted + self._poll_s - time.monotonic())
        if due is not None:
            pause = min(pause, due - time.time())
        if pause > 0 and not signal.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(signal.wait(), pause)

    async def idle(self, signal: asyncio.Event, remaining: float, due: float | None) -> None:
        """After an empty lease: wait until signal is set, the next task falls due, remaining
        seconds pass or poll_s does, whichever comes first."""
        pause = min(remaining, self._poll_s)
        if due is not None:
            pause = min(pause, max(due - time.time(), 0.001))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(signal.wait(), pause)
