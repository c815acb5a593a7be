"""In-process wake-ups of the SQLite queue: waiters and idle workers hear this process's commits."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from clawq_server.model import Task
from clawq_server.queue.sqlite_db import Effects


class CommitWatch:
    """Wakes the waiters of tasks a commit finished, and idle workers when work arrived.

    Transitions committed by another process on the same file are not heard here: the
    queue's waiters and workers re-read every poll_s for those.
    """

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._finished: dict[str, Task] = {}  # final rows of watched tasks, from their commit
        self.work = asyncio.Event()  # replaced on every notification, so none is missed

    @contextlib.contextmanager
    def watching(self, task_id: str) -> Iterator[asyncio.Event]:
        """An event set when a commit finishes task_id, for the duration of the block."""
        woken = asyncio.Event()
        self._waiters.setdefault(task_id, set()).add(woken)
        try:
            yield woken
        finally:
            waiters = self._waiters.get(task_id)
            if waiters is not None:
                waiters.discard(woken)
                if not waiters:
                    del self._waiters[task_id]
                    self._finished.pop(task_id, None)

    def finished(self, task_id: str, principal: str | None) -> Task | None:
        """The final row a commit gave a watched task (of principal, when given), if any."""
        task = self._finished.get(task_id)
        if task is None or (principal is not None and task.principal != principal):
            return None
        return task

    def on_commit(self, effects: Effects) -> None:
        """Wake whoever waits on what a commit did."""
        for task_id in effects.terminal:
            waiters = self._waiters.get(task_id)
            if waiters:
                if task_id in effects.finished:
                    self._finished[task_id] = effects.finished[task_id]
                for woken in waiters:
                    woken.set()
        if effects.work:
            self.work.set()
            self.work = asyncio.Event()
