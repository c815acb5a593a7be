"""Single submits stored together: one store call, and each caller's own outcome when it fails."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from clawq_server.errors import BackendUnavailable, ResourceExhausted
from clawq_server.model import NewTask, SubmitOutcome
from clawq_server.queue.base import submit_together
from tests.contract.helpers import new_task


class Store:
    """A store that keeps what it is given and refuses as told (by task, or all together)."""

    def __init__(self, refuse_together: Exception | None = None, bad: str = "") -> None:
        self.refuse_together = refuse_together
        self.bad = bad
        self.calls: list[tuple[list[str], bool]] = []
        self.stored: list[str] = []

    async def __call__(
        self, tasks: Sequence[NewTask], atomic: bool
    ) -> list[SubmitOutcome | Exception]:
        ids = [t.id for t in tasks]
        self.calls.append((ids, atomic))
        if len(tasks) > 1 and self.refuse_together is not None:
            raise self.refuse_together
        if self.bad in ids:
            raise ValueError("cannot store this one")
        self.stored += ids
        return [SubmitOutcome(i) for i in ids]


async def test_tasks_go_together_in_one_non_atomic_call() -> None:
    """Three callers' tasks: one store call, not atomic, every outcome in order."""
    store, tasks = Store(), [new_task() for _ in range(3)]
    assert await submit_together(store, tasks) == [SubmitOutcome(t.id) for t in tasks]
    assert store.calls == [([t.id for t in tasks], False)]


async def test_a_refusal_of_all_together_is_retried_one_by_one() -> None:
    """Refused together (full, too large): each is tried alone, and one that fails alone
    fails only its own caller."""
    tasks = [new_task() for _ in range(3)]
    store = Store(ResourceExhausted("full", retry_after=1.0), bad=tasks[1].id)
    got = await submit_together(store, tasks)
    assert got[0] == SubmitOutcome(tasks[0].id)
    assert isinstance(got[1], ValueError)
    assert got[2] == SubmitOutcome(tasks[2].id)
    assert store.stored == [tasks[0].id, tasks[2].id]
    assert [atomic for _, atomic in store.calls] == [False, True, True, True]


async def test_an_unreachable_backend_fails_everyone_at_once() -> None:
    """Each alone would fail the same way: no retries one by one."""
    store, tasks = Store(BackendUnavailable("down")), [new_task() for _ in range(3)]
    with pytest.raises(BackendUnavailable):
        await submit_together(store, tasks)
    assert len(store.calls) == 1


async def test_a_lone_task_is_stored_atomically() -> None:
    """One caller: its refusal is raised to it, as from a submit of its own."""
    task = new_task()
    store = Store(bad=task.id)
    with pytest.raises(ValueError, match="cannot store"):
        await submit_together(store, [task])
    assert store.calls == [([task.id], True)]
