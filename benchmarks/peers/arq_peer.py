"""arq, measured in a venv of its own (arq pins redis<6): `python -m benchmarks.peers.arq_peer N R`.

Prints one JSON line: enqueue_job one at a time and end to end with one `arq` worker
process, each the median of R runs of N tasks, in tasks/s.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from arq import create_pool  # type: ignore[import-not-found, unused-ignore]
from arq.connections import RedisSettings  # type: ignore[import-not-found, unused-ignore]

DONE = "bench:done"
URL = os.environ.get("CLAWQ_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


async def counted(ctx: dict[str, Any], path: str) -> None:
    """Count one completion."""
    await ctx["redis"].incr(DONE)


class WorkerSettings:
    """The `arq` worker's settings."""

    functions = [counted]  # noqa: RUF012 - arq reads class attributes
    redis_settings = RedisSettings.from_dsn(URL)
    max_jobs = 10
    # arq polls an idle queue every 0.5 s by default, which would cap it far below its best.
    poll_delay = 0.01
    keep_result = 0


async def _enqueue(pool: Any, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        await pool.enqueue_job("counted", "a.txt")
    return count / (time.perf_counter() - started)


async def _end_to_end(pool: Any, count: int) -> float:
    await pool.set(DONE, 0)
    started = time.perf_counter()
    for _ in range(count):
        await pool.enqueue_job("counted", "a.txt")
    async with asyncio.timeout(300):
        # The counter is written by the worker process: there is nothing local to wait on.
        while int(await pool.get(DONE) or 0) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
    return count / (time.perf_counter() - started)


async def measure(count: int, repeats: int) -> dict[str, float]:
    """Median enqueue and end-to-end throughput."""
    pool = await create_pool(RedisSettings.from_dsn(URL))
    single = []
    for _ in range(repeats):
        await pool.flushall()
        single.append(await _enqueue(pool, count))
    await pool.flushall()
    arq = str(Path(sys.executable).parent / "arq")
    settings = "benchmarks.peers.arq_peer.WorkerSettings"
    worker = await asyncio.create_subprocess_exec(arq, settings, stderr=asyncio.subprocess.DEVNULL)
    try:
        await _end_to_end(pool, 1)  # the worker is up once one task ran
        e2e = [await _end_to_end(pool, count) for _ in range(repeats)]
    finally:
        worker.terminate()
        await worker.wait()
        await pool.aclose()
    return {"single": statistics.median(single), "e2e": statistics.median(e2e)}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(measure(int(sys.argv[1]), int(sys.argv[2])))))
