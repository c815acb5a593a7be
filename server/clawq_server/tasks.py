"""The task service behind the API: admission, the queue, the cache fast path, waiting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from clawq_server.cache.base import ResultCache
from clawq_server.errors import ClawqError, InvalidArgument, NotFound, ResourceExhausted
from clawq_server.model import Call, SubmitOutcome, Task, TaskPage, TaskQuery, TaskState
from clawq_server.policy.principal import Principal
from clawq_server.queue.base import TaskQueue, submit_one
from clawq_server.recorder import Recorder
from clawq_server.submission import Admission, Admitted

WATCH_POLL_S = 1.0


class Tasks:
    """What TaskService does, in domain terms."""

    def __init__(
        self, queue: TaskQueue, admission: Admission, cache: ResultCache, recorder: Recorder
    ) -> None:
        self._queue = queue
        self._admission = admission
        self._cache = cache
        self._recorder = recorder

    async def submit(self, principal: Principal, call: Call) -> SubmitOutcome:
        """Admit and durably queue one call."""
        admitted = self._admission.admit(principal, call)
        await self._check_room(principal, 1)
        return await submit_one(self._queue, admitted.task)

    async def submit_batch(
        self, principal: Principal, calls: Sequence[Call | InvalidArgument]
    ) -> list[SubmitOutcome]:
        """Admit every call or none: the first refusal raises, naming calls[i]."""
        checked = self._admit(principal, calls)
        for item in checked:
            if isinstance(item, ClawqError):
                raise item
        admitted = [item for item in checked if isinstance(item, Admitted)]
        await self._check_room(principal, len(admitted))
        outcomes = await self._queue.submit([a.task for a in admitted], atomic=True)
        return [o for o in outcomes if not isinstance(o, Exception)]

    async def submit_each(
        self, principal: Principal, calls: Sequence[Call | InvalidArgument]
    ) -> list[SubmitOutcome | ClawqError]:
        """Admit and queue each call on its own; refused calls keep their error in place."""
        checked = self._admit(principal, calls)
        admitted = [item for item in checked if isinstance(item, Admitted)]
        await self._check_room(principal, len(admitted))
        stored = (
            iter(await self._queue.submit([a.task for a in admitted])) if admitted else iter(())
        )
        out: list[SubmitOutcome | ClawqError] = []
        for item in checked:
            if isinstance(item, Admitted):
                outcome = next(stored)
                out.append(outcome if not isinstance(outcome, Exception) else _as_clawq(outcome))
            else:
                out.append(item)
        return out

    async def get(self, principal: Principal, task_id: str) -> Task:
        """One task of the principal."""
        tasks = await self._queue.get_many([task_id], principal.name)
        if not tasks:
            raise NotFound(f"no task {task_id!r}")
        return tasks[0]

    async def get_many(self, principal: Principal, ids: Sequence[str]) -> list[Task]:
        """The principal's tasks among ids."""
        return await self._queue.get_many(ids, principal.name)

    async def wait(self, principal: Principal, task_id: str, timeout: float) -> Task:
        """The task once terminal, or when timeout passes."""
        return await self._queue.wait(task_id, principal.name, timeout)

    async def cancel(self, principal: Principal, task_id: str) -> Task:
        """Cancel a queued task, or ask the worker of a running one to stop it."""
        return await self._queue.cancel(task_id, principal.name)

    async def list_tasks(self, principal: Principal, query: TaskQuery) -> TaskPage:
        """A page of the principal's tasks."""
        return await self._queue.list_tasks(query)

    async def execute(self, principal: Principal, call: Call, timeout: float) -> Task:
        """Run a call and wait for it: from the cache when it can, else through the queue."""
        admitted = self._admission.admit(principal, call)
        cached = await self._cache.lookup(principal, admitted.task)
        if cached is not None:
            self._admission.audit_cached(principal, admitted.task, cached.args)
            self._recorder.add(cached)
            return cached
        await self._check_room(principal, 1)
        return await self._queue.submit_and_wait(admitted.task, timeout)

    async def watch(self, principal: Principal, ids: Sequence[str]) -> AsyncIterator[Task]:
        """Each change of state of the tasks, until all are terminal."""
        seen: dict[str, TaskState] = {}
        while True:
            tasks = await self._queue.get_many(ids, principal.name)
            if not tasks:
                raise NotFound("none of the tasks exist")
            for task in tasks:
                if seen.get(task.id) != task.state:
                    seen[task.id] = task.state
                    yield task
            live = [t.id for t in tasks if not t.done]
            if not live:
                return
            waits = [
                asyncio.create_task(self._queue.wait(i, principal.name, WATCH_POLL_S)) for i in live
            ]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()
                await asyncio.gather(*waits, return_exceptions=True)

    async def _check_room(self, principal: Principal, adding: int) -> None:
        """Refuse work that would take the principal past its max_queued."""
        if principal.max_queued <= 0 or adding == 0:
            return
        queued = await self._queue.count_queued(principal.name)
        if queued + adding > principal.max_queued:
            raise ResourceExhausted(
                f"{principal.name} has {queued} of at most {principal.max_queued} tasks queued",
                retry_after=1.0,
            )

    def _admit(
        self, principal: Principal, calls: Sequence[Call | InvalidArgument]
    ) -> list[Admitted | ClawqError]:
        valid = [c for c in calls if isinstance(c, Call)]
        admitted = iter(self._admission.admit_many(principal, valid))
        out: list[Admitted | ClawqError] = []
        for i, call in enumerate(calls):
            item = next(admitted) if isinstance(call, Call) else call
            out.append(item.prefixed(f"calls[{i}].") if isinstance(item, InvalidArgument) else item)
        return out


def _as_clawq(error: Exception) -> ClawqError:
    return error if isinstance(error, ClawqError) else ClawqError("internal error")
