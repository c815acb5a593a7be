"""Figure 3: no-op tasks submitted and completed end to end, tasks/s."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import clawq
from benchmarks.harness import Figure, median_of, rate
from benchmarks.payloads import stream_requests, stub, submit_stream
from benchmarks.services import Context, Group, no_cache_config, server_args, worker_args
from benchmarks.services import clawq as clawq_process

# Tasks one worker process runs at once: as many as taskiq, the fastest peer, runs by default.
WORKER_CONCURRENCY = 100
REDIS = "End to end, Redis: server + 1 `clawq worker` process"
SQLITE = "End to end, SQLite: embedded server, in-process worker"


async def drained(target: str, timeout: float = 300.0) -> None:
    """Return once no task is ready, delayed or in flight."""
    async with clawq.AsyncClient(target) as client, asyncio.timeout(timeout):
        while True:
            stats = await client.queue_stats()
            if stats.ready == 0 and stats.in_flight == 0 and stats.delayed == 0:
                return
            await asyncio.sleep(0.01)


async def end_to_end(target: str, count: int, batch: int) -> float:
    """Tasks/s from the first call streamed to the queue drained by the workers."""
    async with stub(target) as tasks:
        started = time.perf_counter()
        acked = await submit_stream(tasks, stream_requests(count, batch))
        await drained(target)
        speed = rate(acked, started)
    if acked != count:
        raise RuntimeError(f"only {acked} of {count} calls acknowledged")
    return speed


@contextlib.asynccontextmanager
async def redis_cluster(ctx: Context) -> AsyncIterator[str]:
    """A worker-less server and one `clawq worker` process on the private Redis; the target."""
    prefix, config = ctx.scratch("prefix").name, no_cache_config(ctx)
    async with (
        clawq_process(server_args(ctx, "redis", workers=0, config=config, prefix=prefix)) as server,
        clawq_process(worker_args(ctx, prefix, WORKER_CONCURRENCY, config)),
    ):
        yield server.target


@contextlib.asynccontextmanager
async def embedded(ctx: Context) -> AsyncIterator[str]:
    """The embedded server on SQLite with its in-process worker; the target."""
    args = server_args(ctx, "sqlite", workers=WORKER_CONCURRENCY, config=no_cache_config(ctx))
    async with clawq_process(args) as server:
        yield server.target


async def redis_figure(ctx: Context) -> list[Figure]:
    """End to end on Redis with a separate worker process."""
    count = ctx.sizes.e2e_tasks
    async with redis_cluster(ctx) as target:
        value = await median_of(
            ctx.sizes.repeats, lambda: end_to_end(target, count, ctx.sizes.batch)
        )
    note = f"{count:,} read_file tasks, worker concurrency {WORKER_CONCURRENCY}, cache off"
    return [Figure.measured(REDIS, value, "tasks/s", note=note)]


async def sqlite_figure(ctx: Context) -> list[Figure]:
    """End to end on the embedded server."""
    count = ctx.sizes.e2e_tasks
    async with embedded(ctx) as target:
        value = await median_of(
            ctx.sizes.repeats, lambda: end_to_end(target, count, ctx.sizes.batch)
        )
    note = f"{count:,} read_file tasks, worker concurrency {WORKER_CONCURRENCY}"
    return [Figure.measured(SQLITE, value, "tasks/s", note=note)]


GROUPS = [Group((REDIS,), redis_figure), Group((SQLITE,), sqlite_figure)]
