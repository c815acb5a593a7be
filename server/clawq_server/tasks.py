"""The task service behind the API: admission, the queue, the cache fast path, waiting."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from typing import Any, TypeVar

from clawq_server.cache.base import ResultCache
from clawq_server.errors import (
    ClawqError,
    IdempotencyKeyReused,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from clawq_server.model import Call, JsonObject, SubmitOutcome, Task, TaskPage, TaskQuery, TaskState
from clawq_server.policy.principal import Principal
from clawq_server.queue.base import TaskQueue, submit_one
from clawq_server.recorder import Recorder
from clawq_server.submission import Admission, Admitted

WATCH_POLL_S = 1.0
Stored = TypeVar("Stored")


class Tasks:
    """What TaskService does, in domain terms."""

    def __init__(
        self, queue: TaskQueue, admission: Admission, cache: ResultCache, recorder: Recorder
    ) -> None:
        self._queue = queue
        self._admission = admission
        self._cache = cache
        self._recorder = recorder
        # Room claimed against each principal's max_queued by submissions not yet stored,
        # and the running total of claims released (see _in_room).
        self._claimed: Counter[str] = Counter()
        self._released: Counter[str] = Counter()

    async def submit(self, principal: Principal, call: Call) -> SubmitOutcome:
        """Admit and durably queue one call."""
        admitted = self._admission.admit(principal, call)
        try:
            return await self._in_room(
                principal, 1, partial(submit_one, self._queue, admitted.task)
            )
        except ClawqError as error:
            self._admission.unstored(principal, [admitted], error, charged=1)
            raise

    async def submit_batch(
        self, principal: Principal, calls: Sequence[Call | InvalidArgument]
    ) -> list[SubmitOutcome]:
        """Admit every call or none: the first refusal raises, naming calls[i]."""
        checked = self._admit(principal, calls)
        admitted = [item for item in checked if isinstance(item, Admitted)]
        refusal = next((item for item in checked if isinstance(item, ClawqError)), None)
        if refusal is not None:
            # The refused call keeps its token; the calls refused with it get theirs back.
            self._admission.unstored(principal, admitted, refusal, charged=0)
            raise refusal
        try:
            stored = await self._store(principal, admitted, atomic=True)
        except IdempotencyKeyReused as error:
            # Every call was admitted, so admitted[i] is calls[i].
            ids = [item.task.id for item in admitted]
            index = ids.index(error.task_id) if error.task_id in ids else None
            raise error if index is None else error.prefixed(f"calls[{index}].") from None
        return [o for o in stored if isinstance(o, SubmitOutcome)]

    async def submit_each(
        self, principal: Principal, calls: Sequence[Call | InvalidArgument]
    ) -> list[SubmitOutcome | ClawqError]:
        """Admit and queue each call on its own; refused calls keep their error in place."""
        checked = self._admit(principal, calls)
        admitted = [item for item in checked if isinstance(item, Admitted)]
        try:
            stored = iter(await self._store(principal, admitted, atomic=False))
        except ClawqError as error:
            # Each call is answered on its own, so the caller knows what to retry.
            return [error if isinstance(item, Admitted) else item for item in checked]
        out: list[SubmitOutcome | ClawqError] = []
        for i, item in enumerate(checked):
            if not isinstance(item, Admitted):
                out.append(item)  # refused in admission, already under calls[i]
                continue
            outcome = next(stored)
            if isinstance(outcome, ClawqError):
                outcome = outcome.prefixed(f"calls[{i}].")
            out.append(outcome)
        return out

    def refused(self, principal: Principal, tool: str, args: JsonObject, error: ClawqError) -> None:
        """Audit a request refused before it became a Call (malformed, or a bad batch)."""
        self._admission.audit_request(principal, tool, args, error)

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
        deadline = time.monotonic() + timeout
        if principal.max_queued <= 0:
            refused = partial(self._admission.unstored, principal, [admitted], charged=1)
            return await self._queue.submit_and_wait(admitted.task, timeout, refused=refused)
        # The room is held until the task is stored, not while it runs.
        store = partial(submit_one, self._queue, admitted.task)
        try:
            stored = await self._in_room(principal, 1, store)
        except ClawqError as error:
            self._admission.unstored(principal, [admitted], error, charged=1)
            raise
        remaining = max(0.0, deadline - time.monotonic())
        return await self._queue.wait(stored.task_id, principal.name, remaining)

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

    async def _in_room(
        self, principal: Principal, adding: int, store: Callable[[], Awaitable[Stored]]
    ) -> Stored:
        """store(), once room for adding tasks is claimed under the principal's max_queued.

        Submissions of one principal are stored concurrently (a stream keeps several batches
        in flight), so each check counts the claims of the others. A claim released while
        the count was being read may or may not be in that count, so it is counted too: the
        check errs on the side of refusing, never of admitting past the bound. The store
        runs as its own task and holds its claim until it ends, even if the caller goes
        away: a write still under way keeps its room.
        """
        name, bound = principal.name, principal.max_queued
        if bound <= 0 or adding == 0:
            return await store()
        released = self._released[name]
        queued = await self._queue.count_queued(name)
        in_flight = self._claimed[name] + self._released[name] - released
        if queued + in_flight + adding > bound:
            raise ResourceExhausted(
                f"{name} has {queued + self._claimed[name]} of at most {bound} tasks queued",
                retry_after=1.0,
            )
        self._claimed[name] += adding
        running = asyncio.ensure_future(store())
        running.add_done_callback(partial(self._release, name, adding))
        return await asyncio.shield(running)

    def _release(self, name: str, adding: int, done: asyncio.Future[Any]) -> None:
        self._claimed[name] -= adding
        self._released[name] += adding
        if not done.cancelled():
            done.exception()  # retrieved here too: its caller may be gone

    async def _store(
        self, principal: Principal, admitted: Sequence[Admitted], *, atomic: bool
    ) -> list[SubmitOutcome | ClawqError]:
        """Store admitted calls within the principal's room. A refusal of all of them is
        audited (as one record) and raised; a refusal of one is audited and left in its
        place."""
        if not admitted:
            return []
        tasks = [a.task for a in admitted]
        try:
            results = await self._in_room(
                principal, len(admitted), partial(self._queue.submit, tasks, atomic=atomic)
            )
        except ClawqError as error:
            # One token stays spent: every refused request costs, however it is refused.
            self._admission.unstored(principal, admitted, error, charged=1)
            raise
        out: list[SubmitOutcome | ClawqError] = []
        for item, result in zip(admitted, results, strict=True):
            if isinstance(result, Exception):
                refusal = _as_clawq(result)
                self._admission.audit_refusal(principal, item.call, refusal)
                out.append(refusal)
            else:
                out.append(result)
        return out

    def _admit(
        self, principal: Principal, calls: Sequence[Call | InvalidArgument]
    ) -> list[Admitted | ClawqError]:
        valid = [c for c in calls if isinstance(c, Call)]
        admitted = iter(self._admission.admit_many(principal, valid))
        out: list[Admitted | ClawqError] = []
        for i, call in enumerate(calls):
            item = next(admitted) if isinstance(call, Call) else call
            out.append(item.prefixed(f"calls[{i}].") if isinstance(item, ClawqError) else item)
        return out


def _as_clawq(error: Exception) -> ClawqError:
    return error if isinstance(error, ClawqError) else ClawqError("internal error")
