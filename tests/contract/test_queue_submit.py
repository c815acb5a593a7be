"""Behaviour suite, submission side: storing, idempotency, backpressure, lookups."""

from __future__ import annotations

import asyncio

import pytest

from clawq_server.errors import IdempotencyKeyReused, ResourceExhausted
from clawq_server.model import SideEffect, SubmitOutcome, TaskState
from clawq_server.queue.base import TaskQueue, submit_one

from .helpers import MakeQueue, new_task


async def test_submit_then_get_round_trips_the_task(queue: TaskQueue) -> None:
    """A submitted task reads back QUEUED with every field it was given."""
    task = new_task(
        "write_file",
        args={"path": "x", "data": "é"},
        key="k",
        priority=4,
        max_attempts=5,
        idempotent=True,
        delay=30,
    )
    assert await queue.submit([task]) == [SubmitOutcome(task.id, existing=False)]
    [got] = await queue.get_many([task.id], "alice")
    assert got.id == task.id
    assert (got.principal, got.tool) == ("alice", "write_file")
    assert got.args == {"path": "x", "data": "é"}
    assert got.state == TaskState.QUEUED
    assert got.side_effect == SideEffect.WRITE
    assert (got.attempt, got.max_attempts, got.priority) == (0, 5, 4)
    assert (got.idempotency_key, got.idempotent) == ("k", True)
    assert abs((got.created - task.created).total_seconds()) < 1e-3
    assert abs((got.not_before - task.not_before).total_seconds()) < 1e-3
    assert got.created.tzinfo is not None
    assert (got.started, got.finished, got.result, got.error) == (None, None, None, None)


async def test_get_many_keeps_order_and_skips_unknown_ids(queue: TaskQueue) -> None:
    """get_many answers in the order asked and leaves out ids that do not exist."""
    tasks = [new_task() for _ in range(3)]
    await queue.submit(tasks)
    ids = [tasks[2].id, "missing", tasks[0].id, tasks[1].id]
    got = await queue.get_many(ids, None)
    assert [t.id for t in got] == [tasks[2].id, tasks[0].id, tasks[1].id]


async def test_get_many_handles_more_ids_than_one_query_holds(queue: TaskQueue) -> None:
    """Looking up 2,000 ids at once finds all of them."""
    tasks = [new_task() for _ in range(2000)]
    await queue.submit(tasks)
    got = await queue.get_many([t.id for t in tasks], "alice")
    assert [t.id for t in got] == [t.id for t in tasks]


async def test_other_principals_tasks_are_invisible(queue: TaskQueue) -> None:
    """A task of another principal is not returned, as if it did not exist."""
    task = new_task(principal="bob")
    await queue.submit([task])
    assert await queue.get_many([task.id], "alice") == []
    assert [t.id for t in await queue.get_many([task.id], "bob")] == [task.id]


async def test_same_key_same_args_returns_the_existing_task(queue: TaskQueue) -> None:
    """Resubmitting an idempotency key with the same arguments yields the first task."""
    first = new_task(key="k1")
    await queue.submit([first])
    again = new_task(key="k1")
    assert await queue.submit([again]) == [SubmitOutcome(first.id, existing=True)]
    assert await queue.get_many([again.id], None) == []


async def test_same_key_other_args_is_rejected_in_place(queue: TaskQueue) -> None:
    """A reused key with other arguments fails that item only; the rest are stored."""
    await queue.submit([new_task(key="k1")])
    clash = new_task(key="k1", args={"path": "other"})
    fine = new_task()
    [bad, good] = await queue.submit([clash, fine])
    assert isinstance(bad, IdempotencyKeyReused)
    assert good == SubmitOutcome(fine.id)
    assert await queue.get_many([clash.id], None) == []


async def test_atomic_batch_with_a_conflict_stores_nothing(queue: TaskQueue) -> None:
    """With atomic=True a key conflict raises and none of the batch is stored."""
    await queue.submit([new_task(key="k1")])
    batch = [new_task(), new_task(key="k1", args={"path": "other"}), new_task()]
    with pytest.raises(IdempotencyKeyReused):
        await queue.submit(batch, atomic=True)
    assert await queue.get_many([t.id for t in batch], None) == []


async def test_repeated_key_inside_one_batch_is_stored_once(queue: TaskQueue) -> None:
    """Two items with one key in a batch make one task; other args for it are rejected."""
    a, b, c = new_task(key="dup"), new_task(key="dup"), new_task(key="dup", args={"p": 1})
    outcomes = await queue.submit([a, b, c])
    assert outcomes[:2] == [SubmitOutcome(a.id), SubmitOutcome(a.id, existing=True)]
    assert isinstance(outcomes[2], IdempotencyKeyReused)
    assert [t.id for t in await queue.get_many([a.id, b.id, c.id], None)] == [a.id]


async def test_keys_are_scoped_per_principal(queue: TaskQueue) -> None:
    """The same key from two principals makes two tasks."""
    mine, theirs = new_task(key="k"), new_task(key="k", principal="bob", args={"p": 2})
    assert await queue.submit([mine, theirs]) == [SubmitOutcome(mine.id), SubmitOutcome(theirs.id)]


async def test_empty_submit_stores_nothing(queue: TaskQueue) -> None:
    """Submitting no tasks returns no outcomes."""
    assert await queue.submit([]) == []


async def test_full_queue_answers_resource_exhausted(make_queue: MakeQueue) -> None:
    """Past max_queued waiting tasks, a submit is refused with QUEUE_FULL and a retry hint."""
    queue = await make_queue(max_queued=5)
    await queue.submit([new_task() for _ in range(4)])
    overflow = [new_task(), new_task()]
    with pytest.raises(ResourceExhausted) as caught:
        await queue.submit(overflow)
    assert caught.value.reason == "QUEUE_FULL"
    assert caught.value.retry_after is not None
    assert caught.value.retry_after > 0
    assert await queue.get_many([t.id for t in overflow], None) == []
    await queue.submit([new_task()])


async def test_concurrent_single_submits_each_get_their_own_outcome(queue: TaskQueue) -> None:
    """One-task submits made at once (stored together) behave as if made one by one:
    a repeated key with the same arguments finds the first task, with other arguments it
    is refused, and the rest are stored."""
    first = new_task(key="same")
    again = new_task(key="same")
    clash = new_task(key="same", args={"path": "b.txt"})
    plain = [new_task() for _ in range(5)]
    tasks = [first, *plain, again, clash]
    got = await asyncio.gather(*(submit_one(queue, task) for task in tasks), return_exceptions=True)
    assert got[: len(plain) + 1] == [SubmitOutcome(t.id) for t in [first, *plain]]
    assert got[-2] == SubmitOutcome(first.id, existing=True)
    assert isinstance(got[-1], IdempotencyKeyReused)
    stored = await queue.get_many([t.id for t in tasks], "alice")
    assert sorted(t.id for t in stored) == sorted(t.id for t in [first, *plain])


async def test_concurrent_single_submits_fill_a_queue_to_its_limit(make_queue: MakeQueue) -> None:
    """Single submits made at once into a queue with room for some: those that fit are
    stored, the others are refused with QUEUE_FULL."""
    queue = await make_queue(max_queued=5)
    await queue.submit([new_task() for _ in range(3)])
    tasks = [new_task() for _ in range(4)]
    got = await asyncio.gather(*(submit_one(queue, task) for task in tasks), return_exceptions=True)
    assert got[:2] == [SubmitOutcome(t.id) for t in tasks[:2]]
    assert all(isinstance(o, ResourceExhausted) for o in got[2:])
    assert len(await queue.get_many([t.id for t in tasks], None)) == 2


async def test_ten_thousand_tasks_in_batches_are_all_stored(queue: TaskQueue) -> None:
    """10,000 tasks in batches of 1,000 are all acknowledged, stored and counted."""
    tasks = [new_task(priority=i % 3) for i in range(10_000)]
    for start in range(0, len(tasks), 1000):
        outcomes = await queue.submit(tasks[start : start + 1000])
        assert all(isinstance(o, SubmitOutcome) and not o.existing for o in outcomes)
    stats = await queue.stats()
    assert sum(stats.ready_by_priority.values()) == 10_000
    assert stats.ready_by_priority == {0: 3334, 1: 3333, 2: 3333}
    got = await queue.get_many([t.id for t in tasks[::97]], "alice")
    assert len(got) == len(tasks[::97])


async def test_concurrent_submits_are_all_acknowledged(queue: TaskQueue) -> None:
    """Many submits in flight at once each get their own outcomes."""
    batches = [[new_task() for _ in range(10)] for _ in range(50)]
    results = await asyncio.gather(*(queue.submit(b) for b in batches))
    for batch, outcomes in zip(batches, results, strict=True):
        assert outcomes == [SubmitOutcome(t.id) for t in batch]


async def test_count_queued_counts_one_principals_waiting_tasks(queue: TaskQueue) -> None:
    """count_queued sees a principal's QUEUED tasks, delayed ones too, and nobody else's."""
    await queue.submit([new_task(), new_task(), new_task(delay=60), new_task(principal="bob")])
    assert await queue.count_queued("alice") == 3
    assert await queue.count_queued("bob") == 1
    assert await queue.count_queued("carol") == 0
    dave = new_task(principal="dave")
    await queue.submit([dave])
    await queue.cancel(dave.id, "dave")
    assert await queue.count_queued("dave") == 0
