"""Figure 1: SubmitStream batch throughput beside sqlite3 and redis-py; BatchGetTasks reads."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import redis

from benchmarks.harness import Figure, Target, median_of, rate
from benchmarks.payloads import redis_payloads, sqlite_rows, stream_requests, stub, submit_stream
from benchmarks.services import Context, Group, clawq, server_args
from clawq.v1 import task_service_pb2
from clawq_server.queue.sqlite_db import connect
from clawq_server.queue.sqlite_schema import INSERT, apply_schema

SQLITE = "SubmitStream → SQLite (batches of 1,000)"
REDIS_LPUSH = "SubmitStream → Redis vs LPUSH pipeline"
REDIS_XADD = "SubmitStream → Redis vs XADD pipeline (raw limit)"
GET_SQLITE = "BatchGetTasks, 1,000 ids a call (SQLite)"
GET_REDIS = "BatchGetTasks, 1,000 ids a call (Redis)"
GET_FLOOR = 100_000.0


async def clawq_stream(
    ctx: Context, target: str, ids: list[str] | None = None, count: int = 0
) -> float:
    """Tasks/s acknowledged by one SubmitStream of count (default submit_tasks) calls."""
    count, batch = count or ctx.sizes.submit_tasks, ctx.sizes.batch
    async with stub(target) as tasks:
        started = time.perf_counter()
        acked = await submit_stream(tasks, stream_requests(count, batch), ids)
        speed = rate(acked, started)
    if acked != count:
        raise RuntimeError(f"SubmitStream acknowledged {acked} of {count} calls")
    return speed


async def batch_get(target: str, ids: list[str]) -> float:
    """Tasks/s read back by BatchGetTasks, 1,000 ids a call, one call at a time."""
    async with stub(target) as tasks:
        started = time.perf_counter()
        found = 0
        for start in range(0, len(ids), 1000):
            request = task_service_pb2.BatchGetTasksRequest(task_ids=ids[start : start + 1000])
            found += len((await tasks.BatchGetTasks(request)).tasks)
        return rate(found, started)


def sqlite_executemany(ctx: Context) -> float:
    """Rows/s of sqlite3 executemany, one transaction per 1,000 rows, the queue's schema."""
    rows = sqlite_rows(ctx.sizes.submit_tasks)
    conn = connect(ctx.scratch("raw-sqlite") / "raw.db")
    apply_schema(conn)
    batch = ctx.sizes.batch
    started = time.perf_counter()
    for start in range(0, len(rows), batch):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT, rows[start : start + batch])
        conn.execute("COMMIT")
    speed = rate(len(rows), started)
    conn.close()
    return speed


def redis_pipelined(ctx: Context, command: str) -> float:
    """Payloads/s pushed by redis-py pipelines of 1,000 XADD or LPUSH commands."""
    payloads = redis_payloads(ctx.sizes.submit_tasks)
    key = f"raw:{command}:{time.monotonic_ns()}"
    client = redis.Redis.from_url(ctx.redis_url)
    started = time.perf_counter()
    for start in range(0, len(payloads), ctx.sizes.batch):
        pipe = client.pipeline(transaction=False)
        for payload in payloads[start : start + ctx.sizes.batch]:
            if command == "xadd":
                pipe.xadd(key, {"d": payload})
            else:
                pipe.lpush(key, payload)
        pipe.execute()
    speed = rate(len(payloads), started)
    client.close()
    return speed


async def _in_thread(ctx: Context, measure: Callable[..., float], *args: object) -> float:
    # A thread keeps the event loop responsive; nothing else runs meanwhile.
    return await median_of(ctx.sizes.repeats, lambda: asyncio.to_thread(measure, ctx, *args))


async def sqlite_figures(ctx: Context) -> list[Figure]:
    """SubmitStream into SQLite beside executemany; BatchGetTasks on what was stored."""
    ids: list[str] = []
    async with clawq(server_args(ctx, "sqlite", workers=0)) as server:
        value = await median_of(ctx.sizes.repeats, lambda: clawq_stream(ctx, server.target, ids))
        first = ids[: ctx.sizes.submit_tasks]
        reads = await median_of(ctx.sizes.repeats, lambda: batch_get(server.target, first))
    raw = await _in_thread(ctx, sqlite_executemany)
    return [
        Figure.measured(
            SQLITE, value, "tasks/s", baseline=("sqlite3 executemany", raw), target=Target(0.7),
            note="acknowledged after commit (WAL, synchronous=NORMAL)",
        ),
        Figure.measured(
            GET_SQLITE, reads, "tasks/s", baseline=("floor", GET_FLOOR), target=Target(1.0)
        ),
    ]  # fmt: skip


async def redis_figures(ctx: Context) -> list[Figure]:
    """SubmitStream into Redis beside pipelined XADD and LPUSH (RQ is in bench_peers)."""
    ctx.flush_redis()
    ids: list[str] = []
    async with clawq(server_args(ctx, "redis", workers=0)) as server:
        value = await median_of(ctx.sizes.repeats, lambda: clawq_stream(ctx, server.target, ids))
        first = ids[: ctx.sizes.submit_tasks]
        reads = await median_of(ctx.sizes.repeats, lambda: batch_get(server.target, first))
    xadd = await _in_thread(ctx, redis_pipelined, "xadd")
    lpush = await _in_thread(ctx, redis_pipelined, "lpush")
    ctx.flush_redis()
    durable = "acknowledged after the write (Redis AOF, appendfsync everysec)"
    return [
        Figure.measured(
            REDIS_LPUSH, value, "tasks/s",
            baseline=("redis-py pipeline of 1,000 LPUSH", lpush), target=Target(1.0), note=durable,
        ),
        Figure.measured(
            REDIS_XADD, value, "tasks/s",
            baseline=("redis-py pipeline of 1,000 XADD", xadd), note=durable,
        ),
        Figure.measured(
            GET_REDIS, reads, "tasks/s", baseline=("floor", GET_FLOOR), target=Target(1.0)
        ),
    ]  # fmt: skip


GROUPS = [
    Group((SQLITE, GET_SQLITE), sqlite_figures),
    Group((REDIS_LPUSH, REDIS_XADD, GET_REDIS), redis_figures),
]
