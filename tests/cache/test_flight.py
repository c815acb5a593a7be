"""Single flight and the Execute fast path."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import timedelta

import orjson

from clawq_server.cache.tool_cache import ToolCache
from clawq_server.model import NewTask, SideEffect, TaskState, utcnow
from tests.cache.conftest import Kit, MakeCache, settle


async def joined(cache: ToolCache, followers: int) -> None:
    """Wait until followers calls have joined the run in progress (a Redis store answers
    each call's lookup in its own time, possibly after the leader has started)."""
    deadline = time.monotonic() + 5.0
    while cache._flights.followers() < followers:
        assert time.monotonic() < deadline, "the calls did not join the run in progress"
        await asyncio.sleep(0.001)


async def test_identical_concurrent_calls_share_one_run(kit: Kit, make_cache: MakeCache) -> None:
    """Eight identical calls arriving while the first runs all get its result from one run."""
    (kit.root / "s.txt").write_bytes(b"shared")
    await settle(kit.root / "s.txt")
    kit.read.gate = asyncio.Event()
    async with make_cache() as cache:
        calls = [asyncio.create_task(kit.call(cache, kit.read, path="s.txt")) for _ in range(8)]
        await asyncio.wait_for(kit.read.started.wait(), 5.0)
        await joined(cache, 7)
        kit.read.gate.set()
        results = await asyncio.gather(*calls)
    assert kit.read.runs == 1
    assert {r.output for r in results} == {b"shared"}


async def test_a_failed_leader_fails_its_followers_once(kit: Kit, make_cache: MakeCache) -> None:
    """Calls that joined a run share its failure: the file went away after they joined."""
    (kit.root / "gone.txt").write_bytes(b"soon gone")
    await settle(kit.root / "gone.txt")
    kit.read.gate = asyncio.Event()
    async with make_cache() as cache:
        calls = [asyncio.create_task(kit.call(cache, kit.read, path="gone.txt")) for _ in range(4)]
        await asyncio.wait_for(kit.read.started.wait(), 5.0)
        await joined(cache, 3)
        (kit.root / "gone.txt").unlink()
        kit.read.gate.set()
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert kit.read.runs == 1
    assert all("does not exist" in str(o) for o in outcomes)


async def test_calls_after_an_unproven_run_started_run_themselves(
    kit: Kit, make_cache: MakeCache
) -> None:
    """A missing file proves nothing: calls made once its run has started do not share it
    (the file may have appeared meanwhile), and each reports the failure it found."""
    kit.read.gate = asyncio.Event()
    async with make_cache() as cache:
        leader = asyncio.create_task(kit.call(cache, kit.read, path="nope"))
        await asyncio.wait_for(kit.read.started.wait(), 5.0)
        late = [asyncio.create_task(kit.call(cache, kit.read, path="nope")) for _ in range(3)]
        deadline = time.monotonic() + 5.0
        while kit.read.runs < 4:
            assert time.monotonic() < deadline, "the late calls did not run"
            await asyncio.sleep(0.001)
        kit.read.gate.set()
        outcomes = await asyncio.gather(leader, *late, return_exceptions=True)
    assert cache._flights.followers() == 0
    assert all("does not exist" in str(o) for o in outcomes)


async def test_a_cancelled_leader_hands_over_to_a_follower(kit: Kit, make_cache: MakeCache) -> None:
    """When the first caller is cancelled, a waiting identical call runs the tool itself."""
    (kit.root / "c.txt").write_bytes(b"carry")
    kit.read.gate = asyncio.Event()
    async with make_cache() as cache:
        leader = asyncio.create_task(kit.call(cache, kit.read, path="c.txt"))
        await asyncio.wait_for(kit.read.started.wait(), 5.0)
        follower = asyncio.create_task(kit.call(cache, kit.read, path="c.txt"))
        await asyncio.sleep(0)
        leader.cancel()
        kit.read.gate.set()
        result = await asyncio.wait_for(follower, 5.0)
    assert result.output == b"carry"
    assert kit.read.runs == 2


async def test_a_call_made_after_a_change_never_joins_an_unproven_run(
    kit: Kit, make_cache: MakeCache
) -> None:
    """A run whose inputs could not be proven (a file stamped in the future, so racily
    clean for the next hour) may have read them before a later identical call was made;
    that call runs itself and sees the change."""
    (kit.root / "h.txt").write_bytes(b"before")
    later = time.time_ns() + 3600 * 10**9
    os.utime(kit.root / "h.txt", ns=(later, later))
    hold = kit.read.hold = asyncio.Event()
    async with make_cache() as cache:
        leader = asyncio.create_task(kit.call(cache, kit.read, path="h.txt"))
        await asyncio.wait_for(kit.read.ran.wait(), 5.0)
        (kit.root / "h.txt").write_bytes(b"after")
        late = asyncio.create_task(kit.call(cache, kit.read, path="h.txt"))
        deadline = time.monotonic() + 5.0
        while kit.read.runs < 2 and cache._flights.followers() == 0:
            assert time.monotonic() < deadline, "the late call neither joined nor ran"
            await asyncio.sleep(0.001)
        hold.set()
        first, second = await asyncio.gather(leader, late)
    assert first.output == b"before"
    assert second.output == b"after"
    assert kit.read.runs == 2


def new_task(tool: str, args: dict[str, object], **extra: object) -> NewTask:
    """A NewTask as admission builds it."""
    args_json = orjson.dumps(args, option=orjson.OPT_SORT_KEYS)
    now = utcnow()
    fields: dict[str, object] = {
        "id": uuid.uuid4().hex, "principal": "alice", "tool": tool, "args_json": args_json,
        "args_hash": "h", "side_effect": SideEffect.READ_ONLY, "idempotency_key": "",
        "priority": 0, "max_attempts": 3, "idempotent": False, "created": now,
        "not_before": now + timedelta(0),
    }  # fmt: skip
    fields.update(extra)
    return NewTask(**fields)  # type: ignore[arg-type]


async def test_lookup_answers_a_hit_with_a_finished_task(kit: Kit, make_cache: MakeCache) -> None:
    """lookup misses without running anything, then returns a SUCCEEDED cached task."""
    (kit.root / "l.txt").write_bytes(b"looked")
    await settle(kit.root / "l.txt")
    task = new_task("read_file", kit.registry.validate("read_file", {"path": "l.txt"}))
    async with make_cache() as cache:
        assert await cache.lookup(kit.principal, task) is None
        assert kit.read.runs == 0
        await kit.call(cache, kit.read, path="l.txt")
        found = await cache.lookup(kit.principal, task)
        keyed = await cache.lookup(
            kit.principal,
            new_task("read_file", dict(orjson.loads(task.args_json)), idempotency_key="k1"),
        )
    assert found is not None
    assert found.result is not None
    assert (found.id, found.state, found.result.cached) == (task.id, TaskState.SUCCEEDED, True)
    assert found.result.output == b"looked"
    assert keyed is None  # an idempotency key asks for a stored task
    assert kit.read.runs == 1
