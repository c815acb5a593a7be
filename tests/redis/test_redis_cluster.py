"""Redis-only behaviour across processes and outages: shared waits, restarts, refusals."""

from __future__ import annotations

import asyncio
import signal
import struct
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
import redis.asyncio

import clawq
from clawq_server.errors import BackendFull, BackendUnavailable
from clawq_server.model import Completion, RetryPolicy, TaskError, TaskState, ToolResult
from clawq_server.queue.base import submit_one
from tests.conftest import ServerFactory
from tests.contract.helpers import eventually, new_task
from tests.redis_support import MakeRedisQueue, RedisServer, unique_prefix

LONG = timedelta(seconds=30)


async def test_completion_on_one_server_wakes_a_waiter_on_another(
    make_redis_queue: MakeRedisQueue,
) -> None:
    """wait() on one RedisQueue returns soon after another instance completes the task."""
    front, back = await make_redis_queue(), await make_redis_queue()
    task = new_task()
    await front.submit([task])
    waiting = asyncio.create_task(front.wait(task.id, "alice", 10.0))
    [held] = await back.lease("w1", None, 1, LONG, wait=2.0)
    await asyncio.sleep(0.05)  # let the waiter park; it must be woken, not poll
    started = time.monotonic()
    await back.complete(held.task.id, held.token, Completion(result=ToolResult(b"ok")))
    done = await asyncio.wait_for(waiting, 5.0)
    assert done.state == TaskState.SUCCEEDED
    assert time.monotonic() - started < 0.5  # well below the 1 s fallback re-read


async def test_submit_on_one_server_wakes_a_lease_waiting_on_another(
    make_redis_queue: MakeRedisQueue,
) -> None:
    """A lease waiting on one instance returns soon after a submit through another."""
    front, back = await make_redis_queue(), await make_redis_queue()
    waiting = asyncio.create_task(back.lease("w1", None, 1, LONG, wait=10.0))
    await asyncio.sleep(0.1)
    task = new_task()
    started = time.monotonic()
    await front.submit([task])
    [held] = await asyncio.wait_for(waiting, 5.0)
    assert held.task.id == task.id
    assert time.monotonic() - started < 0.5


async def test_each_process_hears_only_the_messages_it_acts_on(
    make_redis_queue: MakeRedisQueue, private_redis: RedisServer
) -> None:
    """A worker-only queue (watch_results=False) is never sent a message for every task
    any worker finishes; a serving queue that does not lease is never sent every submit's
    announcement. Each hears the other kind, and a lease is woken by a submit."""
    worker = await make_redis_queue(watch_results=False)
    serving = await make_redis_queue()
    channels = (worker.keys.events, worker.keys.done)
    waiting = asyncio.create_task(worker.lease("w1", None, 1, LONG, wait=10.0))
    async with redis.asyncio.Redis.from_url(private_redis.url) as client:
        async with asyncio.timeout(5.0):
            # Subscriptions are Redis's state: there is nothing local to wait on.
            while dict(await client.pubsub_numsub(*channels)) != {  # noqa: ASYNC110
                channels[0].encode(): 1,
                channels[1].encode(): 1,
            }:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert dict(await client.pubsub_numsub(*channels)) == {
            channels[0].encode(): 1,
            channels[1].encode(): 1,
        }
    task = new_task()
    started = time.monotonic()
    await serving.submit([task])
    [held] = await asyncio.wait_for(waiting, 5.0)
    assert held.task.id == task.id
    assert time.monotonic() - started < 0.5


async def _evals(client: redis.asyncio.Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def _finish_while_waiting(
    make_redis_queue: MakeRedisQueue, private_redis: RedisServer, output: bytes
) -> tuple[int, bytes]:
    """Complete a task on one instance while another waits on it: the script calls made
    after the waiter's first read (the completion's included) and the output it got."""
    quiet = {"sweep_interval": 0, "poll_s": 30.0}
    front, back = await make_redis_queue(**quiet), await make_redis_queue(**quiet)
    # One task through every step first: Redis runs a script by its hash only once loaded.
    warm = new_task()
    await front.submit([warm])
    [held] = await back.lease("w1", None, 1, LONG)
    await back.complete(warm.id, held.token, Completion(result=ToolResult(b"")))
    await front.wait(warm.id, "alice", 5.0)
    task = new_task()
    await front.submit([task])
    [held] = await back.lease("w1", None, 1, LONG)
    async with redis.asyncio.Redis.from_url(private_redis.url) as client:
        before = await _evals(client)
        waiting = asyncio.create_task(front.wait(task.id, "alice", 10.0))
        async with asyncio.timeout(5.0):
            # The waiter's first read is Redis's to count: nothing local to wait on.
            while await _evals(client) == before:  # noqa: ASYNC110
                await asyncio.sleep(0.001)
        await back.complete(task.id, held.token, Completion(result=ToolResult(output)))
        done = await asyncio.wait_for(waiting, 5.0)
        calls = await _evals(client) - before - 1
    assert done.state is TaskState.SUCCEEDED
    assert done.result is not None
    return calls, done.result.output


async def test_a_waiter_gets_the_finished_task_from_the_done_message(
    make_redis_queue: MakeRedisQueue, private_redis: RedisServer
) -> None:
    """The done message carries the finished record, bytes of any value included: a
    waiting server answers without reading the task back."""
    output = bytes(range(256)) * 4
    calls, got = await _finish_while_waiting(make_redis_queue, private_redis, output)
    assert got == output
    assert calls == 1  # the completion only


async def test_a_large_result_is_read_back_rather_than_published(
    make_redis_queue: MakeRedisQueue, private_redis: RedisServer
) -> None:
    """A result over the inline cap is not sent to every server: the waiter reads it."""
    output = b"x" * 20_000
    calls, got = await _finish_while_waiting(make_redis_queue, private_redis, output)
    assert got == output
    assert calls == 2  # the completion and the waiter's read


async def test_one_done_message_carries_at_most_its_budget_of_records(
    make_redis_queue: MakeRedisQueue, private_redis: RedisServer
) -> None:
    """Forty tasks of 6 KB finished by one script call: the message that every server
    receives stays within its 64 KiB budget, and each waiter still gets its own output
    (carried or read back)."""
    quiet = {"sweep_interval": 0, "poll_s": 30.0}
    front, back = await make_redis_queue(**quiet), await make_redis_queue(**quiet)
    tasks = [new_task() for _ in range(40)]
    await front.submit(tasks)
    held = await back.lease("w1", None, 40, LONG)
    assert len(held) == 40
    async with redis.asyncio.Redis.from_url(private_redis.url) as client:
        pubsub = client.pubsub()
        await pubsub.subscribe(front.keys.done)
        confirmed = await pubsub.get_message(timeout=5.0)
        assert confirmed is not None
        assert confirmed["type"] == "subscribe"
        waits = [asyncio.create_task(front.wait(t.id, "alice", 10.0)) for t in tasks]
        outputs = {lease.task.id: lease.task.id.encode() * 200 for lease in held}
        await asyncio.gather(
            *(
                back.complete(
                    lease.task.id, lease.token, Completion(ToolResult(outputs[lease.task.id]))
                )
                for lease in held
            )
        )
        done = await asyncio.wait_for(asyncio.gather(*waits), 5.0)
        sizes = []
        # Published before the waiters woke: every message is already on its way.
        while (message := await pubsub.get_message(True, timeout=0.2)) is not None:
            sizes.append(len(message["data"]))
        await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped upstream
    assert {t.id: t.result.output for t in done if t.result} == outputs
    assert sizes
    assert max(sizes) <= 65536 + 40 * 64


async def test_an_unreadable_done_message_does_not_stop_the_listener(
    make_redis_queue: MakeRedisQueue, private_redis: RedisServer
) -> None:
    """A message that does not parse is logged; the next completion still wakes its waiter."""
    quiet = {"sweep_interval": 0, "poll_s": 30.0}
    front, back = await make_redis_queue(**quiet), await make_redis_queue(**quiet)
    task = new_task()
    await front.submit([task])
    [held] = await back.lease("w1", None, 1, LONG)
    waiting = asyncio.create_task(front.wait(task.id, "alice", 10.0))
    async with redis.asyncio.Redis.from_url(private_redis.url) as client:
        await client.publish(front.keys.done, b"T\x00\x00")  # cut short
        head = struct.pack(">i", len(task.id)) + task.id.encode()
        record = struct.pack(">i", 9) + b"ab"  # a field longer than the record
        await client.publish(front.keys.done, b"T" + head + struct.pack(">i", len(record)) + record)
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await back.complete(task.id, held.token, Completion(result=ToolResult(b"ok")))
    done = await asyncio.wait_for(waiting, 5.0)
    assert done.state is TaskState.SUCCEEDED
    assert time.monotonic() - started < 0.5  # woken, not found by the 30 s re-read


async def test_single_submits_made_at_once_share_one_script_call(
    make_redis_queue: MakeRedisQueue, private_redis: RedisServer
) -> None:
    """Twenty unary submits in flight together reach Redis as one script call."""
    queue = await make_redis_queue(sweep_interval=0, poll_s=30.0)
    await queue.submit([new_task()])  # loads the script
    tasks = [new_task() for _ in range(20)]
    async with redis.asyncio.Redis.from_url(private_redis.url) as client:
        before = await _evals(client)
        outcomes = await asyncio.gather(*(submit_one(queue, task) for task in tasks))
        assert await _evals(client) == before + 1
    assert [o.task_id for o in outcomes] == [t.id for t in tasks]


async def test_a_lease_after_one_that_emptied_the_queue_waits_for_work_before_asking(
    make_redis_queue: MakeRedisQueue, private_redis: RedisServer
) -> None:
    """A lease that got fewer tasks than it asked for took every ready one: the next lease
    waits for new work before it calls Redis, then takes it with one script call."""
    # No sweeper scripts in the count, and no periodic re-read within the test.
    queue = await make_redis_queue(sweep_interval=0, poll_s=30.0)
    await queue.submit([new_task()])
    assert len(await queue.lease("w1", None, 4, LONG)) == 1
    # A lease that waits out its time: the submit's own wake-up (and the subscriber's first
    # one) reach this process meanwhile, so none is pending when the count starts.
    assert await queue.lease("w1", None, 4, LONG, wait=0.5) == []
    async with redis.asyncio.Redis.from_url(private_redis.url) as client:
        before = await _evals(client)
        waiting = asyncio.create_task(queue.lease("w1", None, 4, LONG, wait=10.0))
        # Time for a lease that asks at once to do so; a waiting one makes no call.
        await asyncio.sleep(0.2)
        assert await _evals(client) == before
        task = new_task()
        await queue.submit([task])
        [held] = await asyncio.wait_for(waiting, 5.0)
        assert held.task.id == task.id
        assert await _evals(client) == before + 2  # the submit and one lease


async def test_a_retry_put_back_with_a_backoff_wakes_a_waiting_lease(
    make_redis_queue: MakeRedisQueue,
) -> None:
    """A retry delayed by its backoff is announced like a delayed submit, so a lease
    waiting after one that emptied the queue re-reads when it falls due (no sweeper and
    no periodic re-read here to find it otherwise)."""
    retry = RetryPolicy(base_delay=timedelta(milliseconds=100))
    queue = await make_redis_queue(sweep_interval=0, poll_s=30.0, retry=retry)
    task = new_task()
    await queue.submit([task])
    [held] = await queue.lease("w1", None, 4, LONG)
    # A lease that waits out its time: the submit's own wake-up (and the subscriber's first
    # one) reach this process meanwhile, so the next lease's wake-up can only be the retry.
    assert await queue.lease("w1", None, 4, LONG, wait=0.5) == []
    error = TaskError("UNAVAILABLE", "FLAKY", "try again")
    state = await queue.complete(task.id, held.token, Completion(error=error, retryable=True))
    assert state is TaskState.QUEUED
    [again] = await asyncio.wait_for(queue.lease("w1", None, 4, LONG, wait=20.0), 5.0)
    assert (again.task.id, again.task.attempt) == (task.id, 2)


async def test_reads_after_a_redis_restart_do_not_fail_on_connections_from_before(
    make_redis_queue: MakeRedisQueue, private_redis: RedisServer
) -> None:
    """Pooled connections older than a restart are stale: a read on one is tried again on a
    fresh connection rather than reported as an outage that is over."""
    queue = await make_redis_queue(sweep_interval=0)
    task = new_task()
    await queue.submit([task])
    await asyncio.gather(*(queue.get_many([task.id], None) for _ in range(8)))
    private_redis.restart()
    found = await asyncio.gather(*(queue.get_many([task.id], None) for _ in range(8)))
    assert [[t.id for t in tasks] for tasks in found] == [[task.id]] * 8
    assert (await queue.stats()).ready_by_priority == {0: 1}


async def test_a_redis_out_of_memory_refuses_and_stores_nothing(
    make_redis_queue: MakeRedisQueue, private_redis: RedisServer
) -> None:
    """At maxmemory (noeviction) a submission is BACKEND_FULL, retryable and not stored;
    once memory is freed the same queue goes on."""
    queue = await make_redis_queue()
    await queue.submit([new_task()])  # the scripts are loaded
    admin = redis.asyncio.Redis.from_url(private_redis.url)
    await admin.config_set("maxmemory", 1)
    refused = new_task()
    with pytest.raises(BackendFull) as full:
        await queue.submit([refused])
    assert (full.value.reason, full.value.maybe_applied) == ("BACKEND_FULL", False)
    await admin.config_set("maxmemory", 0)
    assert await queue.get_many([refused.id], None) == []
    await queue.submit([refused])
    assert [t.id for t in await queue.get_many([refused.id], None)] == [refused.id]
    await admin.aclose()


BUSY_SCRIPT = """
local started = redis.call('TIME')
repeat
    local now = redis.call('TIME')
until (now[1] - started[1]) * 1000000 + now[2] - started[2] > 1500000
return 1
"""


async def test_a_redis_busy_in_a_script_refuses_without_doubt(
    make_redis_queue: MakeRedisQueue, private_redis: RedisServer
) -> None:
    """While another client's script holds Redis past busy-reply-threshold, a submission is
    refused as unavailable, not reported as possibly stored."""
    queue = await make_redis_queue()
    await queue.submit([new_task()])
    admin = redis.asyncio.Redis.from_url(private_redis.url)
    await admin.config_set("busy-reply-threshold", 50)
    busy = asyncio.create_task(asyncio.to_thread(_run_script, private_redis.url, BUSY_SCRIPT))
    probe = redis.asyncio.Redis.from_url(private_redis.url)

    async def answers_busy() -> bool:
        try:
            await probe.ping()
        except redis.exceptions.ResponseError as error:
            return str(error).startswith("BUSY ")
        return False

    await eventually(answers_busy, bool)
    refused = new_task()
    with pytest.raises(BackendUnavailable) as unavailable:
        await queue.submit([refused])
    assert not unavailable.value.maybe_applied
    await busy
    assert await queue.get_many([refused.id], None) == []
    await probe.aclose()
    await admin.aclose()


def _run_script(url: str, script: str) -> object:
    with redis.Redis.from_url(url) as client:
        return client.eval(script, 0)


async def test_redis_restart_is_unavailable_then_recovers(
    make_redis_queue: MakeRedisQueue, private_redis: RedisServer
) -> None:
    """While Redis is down calls fail fast with BackendUnavailable; afterwards the same
    queue works again and nothing acknowledged was lost."""
    queue = await make_redis_queue(socket_timeout=1.0)
    kept = new_task()
    await queue.submit([kept])
    private_redis.stop()
    started = time.monotonic()
    with pytest.raises(BackendUnavailable):
        await queue.submit([new_task()])
    with pytest.raises(BackendUnavailable):
        await queue.get_many([kept.id], None)
    assert time.monotonic() - started < 3.0
    private_redis.start()
    [held] = await queue.lease("w1", None, 1, LONG, wait=2.0)
    assert held.task.id == kept.id
    assert await queue.complete(held.task.id, held.token, Completion()) == TaskState.SUCCEEDED
    again = new_task()
    waiting = asyncio.create_task(queue.wait(again.id, "alice", 10.0))
    await queue.submit([again])
    [held] = await queue.lease("w1", None, 1, LONG, wait=2.0)
    await queue.complete(held.task.id, held.token, Completion())
    assert (await asyncio.wait_for(waiting, 5.0)).state == TaskState.SUCCEEDED


async def test_execute_refused_by_an_unreachable_store_is_audited(
    server_factory: ServerFactory, private_redis: RedisServer, tmp_path: Path
) -> None:
    """Under max_queued the store is asked before the wait: its refusal (Redis down) is a
    refused call and leaves a deny record, as a Submit's does."""
    async with server_factory(
        backend_url=private_redis.url,
        redis_prefix=unique_prefix(),
        workers=0,
        principal_overrides={"max_queued": 10},
    ) as served:
        private_redis.stop()
        async with clawq.AsyncClient(served.target, timeout=10.0) as client:
            with pytest.raises(clawq.Unavailable):
                await client.execute("write_file", path="x.txt", text="never")
    [record] = [r for r in _audit(tmp_path / "audit.jsonl") if r["tool"] == "write_file"]
    assert (record["decision"], record["reason"]) == ("deny", "BACKEND_UNAVAILABLE")
    assert not (served.root / "x.txt").exists()


def _audit(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.mark.slow
async def test_a_submit_whose_reply_is_lost_is_audited_with_its_task_id(
    server_factory: ServerFactory, private_redis: RedisServer, tmp_path: Path
) -> None:
    """Redis is stopped past the server's socket timeout (5 s) with a Submit and an Execute
    on their way, then goes on: each caller hears that it may have taken effect, and each
    audit record is not a refusal but the task's id with outcome UNKNOWN. Whether Redis then
    applies a call depends on how far it got (a fresh connection's handshake may be what
    timed out), so what is checked is that every task it did store is one of those ids."""
    async with server_factory(
        backend_url=private_redis.url, redis_prefix=unique_prefix(), workers=0
    ) as served:
        assert private_redis.process is not None
        async with clawq.AsyncClient(served.target, timeout=30.0) as client:
            await client.submit("read_file", path="first.txt")  # loads the submit script
            private_redis.process.send_signal(signal.SIGSTOP)
            try:
                outcomes = await asyncio.gather(
                    client.submit("write_file", path="x.txt", text="late"),
                    client.execute("write_file", path="y.txt", text="late"),
                    return_exceptions=True,
                )
            finally:
                private_redis.process.send_signal(signal.SIGCONT)
            for outcome in outcomes:
                assert isinstance(outcome, clawq.Unavailable)
                assert "may have taken effect" in str(outcome)

            probe = redis.asyncio.Redis.from_url(private_redis.url)
            await probe.ping()  # answered once Redis has read what was waiting for it
            await probe.aclose()
            stored = [task async for page in client.list_tasks() for task in page]
    late = {task.id for task in stored if task.tool == "write_file"}
    records = [r for r in _audit(tmp_path / "audit.jsonl") if r["tool"] == "write_file"]
    assert len({r["task_id"] for r in records}) == len(records) == 2
    assert late <= {r["task_id"] for r in records}
    for record in records:
        assert record["outcome"] == "UNKNOWN"
        assert (record["decision"], record["reason"]) == ("allow", "OUTCOME_UNKNOWN")
