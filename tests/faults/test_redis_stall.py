"""Redis stalled past a lease: fencing refuses the stale completion, nothing completes twice."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

import clawq
from tests.faults.conftest import Cluster, fetch, lines, settle, wait_for

pytestmark = pytest.mark.slow

LEASE_S = 2.5  # heartbeats every LEASE_S / 3: the window for a stale completion
PAUSE_MS = 4000  # longer than a lease, shorter than the clients' 5 s socket timeout
EARLY, LATE = range(0, 4), range(4, 10)  # finish during the stall / right after it


def held_until_go(i: int) -> list[str]:
    """argv appending a line to t<i>.txt; the first run then waits for go<i>, a rerun
    does not; prints the run count (which run's result was recorded)."""
    script = (
        f"echo x >> t{i}.txt; n=$(wc -l < t{i}.txt); "
        f'if [ "$n" -eq 1 ]; then while [ ! -e go{i} ]; do sleep 0.02; done; fi; echo $n'
    )
    return ["sh", "-c", script]


def go(cluster: Cluster, which: range) -> None:
    """Let the first runs of these tasks finish."""
    for i in which:
        (cluster.root / f"go{i}").touch()


async def test_stall_longer_than_a_lease_is_fenced(cluster: Cluster) -> None:
    """CLIENT PAUSE past a lease: a run finishing after another worker reclaimed its task has
    its completion refused; the task is rerun only when idempotent, and completes once."""
    server = await cluster.serve()
    stalled = await cluster.worker(concurrency=len(EARLY) + len(LATE), lease=LEASE_S)
    redis = Redis.from_url(cluster.redis.url)
    async with clawq.AsyncClient(server.target, timeout=10.0) as client:
        ids = [
            await client.submit(
                "execute_command",
                argv=held_until_go(i),
                idempotent=i % 2 == 0,
                timeout_s=60,
                idle_timeout_s=60,
            )
            for i in (*EARLY, *LATE)
        ]
        started = [cluster.root / f"t{i}.txt" for i in (*EARLY, *LATE)]
        await wait_for(lambda: all(lines(p) == 1 for p in started), 20.0, "every first run")
        await cluster.worker(concurrency=len(LATE), lease=LEASE_S)
        await redis.client_pause(PAUSE_MS, all=True)
        await asyncio.sleep(PAUSE_MS / 2000)
        go(cluster, EARLY)
        await redis.ping()  # answered once the pause is over

        async def reclaimed() -> bool:
            late = await fetch(client, [ids[i] for i in LATE])
            return all(t.attempt > 1 or t.state == "FAILED" for t in late.values())

        await wait_for(reclaimed, 5.0, "the other worker to reclaim the expired leases")
        go(cluster, LATE)
        final = await settle(client, ids, 20.0)
    await redis.aclose()
    log = stalled.output()
    # The stalled worker learns of the loss either when its completion is refused or when
    # its next heartbeat reports the lease lost (then it stops the run); both are fencing.
    assert any(f"lease of {ids[i]} lost" in log for i in LATE), log
    for i in EARLY:
        # Sent during the stall, the completion races the reclaim once Redis is back
        # (a new pooled connection's handshake waits out the pause too): either wins,
        # but the recorded result is the one of the run that holds the lease.
        task, ran = final[ids[i]], lines(started[i])
        if task.attempt == 1 and task.state == "SUCCEEDED":
            assert (ran, task.result is not None and task.result.output.strip()) == (1, "1")
        else:
            assert_reclaimed(i, task, ran)
    for i in LATE:
        assert_reclaimed(i, final[ids[i]], lines(started[i]))


def assert_reclaimed(i: int, task: clawq.Task, ran: int) -> None:
    """A task whose first run lost its lease: a write fails, an idempotent one ran again."""
    if i % 2:  # not idempotent: never run again
        assert (task.state, task.attempt, ran) == ("FAILED", 1, 1)
        assert task.error is not None
        assert task.error.reason == "WORKER_LOST"
    else:  # the rerun's result, not the stale first run's
        assert (task.state, task.attempt, ran) == ("SUCCEEDED", 2, 2)
        assert task.result is not None
        assert task.result.output.strip() == "2"
