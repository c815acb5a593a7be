"""Figure 5: Celery, RQ, arq, Dramatiq, taskiq and SAQ beside clawq on the same private Redis."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable

import redis

from benchmarks.bench_e2e import WORKER_CONCURRENCY, end_to_end
from benchmarks.bench_latency import execute_ok, execute_request
from benchmarks.bench_submit import clawq_stream
from benchmarks.harness import Figure, Status, Target, load, median_latency, median_of, rate
from benchmarks.payloads import read_call, stub
from benchmarks.peers.base import DONE, Peer, completed
from benchmarks.peers.venv import run_arq
from benchmarks.services import (
    REPO,
    Context,
    Group,
    clawq,
    no_cache_config,
    server_args,
    worker_args,
)
from clawq.v1 import task_service_pb2
from tests.processes import child_env

# name: (module, class, bulk call) of the peers run in this process; arq runs in its own venv.
PEERS = {
    "Celery": ("celery_peer", "CeleryPeer", ""),
    "RQ": ("rq_peer", "RqPeer", "enqueue_many"),
    "Dramatiq": ("dramatiq_peer", "DramatiqPeer", ""),
    "taskiq-redis": ("taskiq_peer", "TaskiqPeer", ""),
    "SAQ": ("saq_peer", "SaqPeer", ""),
    "arq": ("", "", ""),
}
BEST = "end to end: clawq vs the best peer, one worker process each"
ROUND_TRIP = "Execute (uncached) round trip p50 vs SAQ enqueue + wait p50, 1 in flight"
Numbers = dict[str, float]


def single_name(peer: str) -> str:
    """The one-at-a-time enqueue figure of a peer."""
    return f"enqueue one at a time: clawq Submit vs {peer}"


def bulk_name(peer: str, call: str) -> str:
    """The bulk enqueue figure of a peer with a bulk call."""
    return f"bulk enqueue: clawq SubmitStream → Redis vs {peer} {call}"


def e2e_name(peer: str) -> str:
    """The end-to-end figure of a peer."""
    return f"end to end: clawq vs {peer}, one worker process each"


def peer_names(peer: str) -> tuple[str, ...]:
    """Every figure name of one peer."""
    bulk = PEERS[peer][2]
    return (single_name(peer), *([bulk_name(peer, bulk)] if bulk else []), e2e_name(peer))


NAMES = (*(n for peer in PEERS for n in peer_names(peer)), BEST, ROUND_TRIP)


@contextlib.asynccontextmanager
async def worker(ctx: Context, argv: list[str]) -> AsyncIterator[None]:
    """A peer's worker process (its output in the scratch dir), terminated on exit."""
    env = child_env(PYTHONPATH=f"{REPO}:{REPO / 'client'}:{REPO / 'server'}")
    log = ctx.scratch("peer-worker") / "output.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, cwd=str(REPO), stdout=out, stderr=asyncio.subprocess.STDOUT
        )
    try:
        yield
    except TimeoutError as exc:
        tail = log.read_bytes()[-300:].decode(errors="replace")
        raise RuntimeError(f"worker exit {proc.returncode}; output ends: {tail}") from exc
    finally:
        if proc.returncode is None:
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def peer_e2e(
    ctx: Context, enqueue: Callable[[int], Awaitable[None]], count: int, timeout: float = 300
) -> float:
    """Tasks/s from the first enqueue to the count-th completion seen in the counter."""
    with redis.Redis.from_url(ctx.redis_url) as client:
        client.set(DONE, 0)
    started = time.perf_counter()
    await enqueue(count)
    async with asyncio.timeout(timeout):
        # The counter is written by another process: there is nothing local to wait on.
        while await asyncio.to_thread(completed) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
    return rate(count, started)


async def timed(ctx: Context, enqueue: Callable[[int], Awaitable[None]]) -> float:
    """Median tasks/s of enqueueing peer_tasks tasks with no worker running."""

    async def once() -> float:
        ctx.flush_redis()
        started = time.perf_counter()
        await enqueue(ctx.sizes.peer_tasks)
        return rate(ctx.sizes.peer_tasks, started)

    return await median_of(ctx.sizes.repeats, once)


async def measure_peer(ctx: Context, peer: Peer) -> Numbers:
    """A peer's enqueue (single, bulk), end-to-end and, for SAQ, round-trip figures."""
    numbers = {"single": await timed(ctx, peer.enqueue)}
    if peer.bulk:
        numbers["bulk"] = await timed(ctx, peer.enqueue_bulk)
    ctx.flush_redis()
    enqueue = peer.enqueue_bulk if peer.bulk else peer.enqueue
    async with worker(ctx, peer.worker_argv()):
        await peer_e2e(ctx, enqueue, 1, timeout=60)  # the worker is up once one task ran
        count = ctx.sizes.peer_tasks
        numbers["e2e"] = await median_of(ctx.sizes.repeats, lambda: peer_e2e(ctx, enqueue, count))
        round_trip = getattr(peer, "round_trip", None)
        if round_trip is not None:
            calls = max(20, ctx.sizes.latency_calls // 10)
            latency = await median_latency(ctx.sizes.repeats, lambda: load(round_trip, calls, 1))
            numbers["round_trip_p50"] = latency.p50
    ctx.flush_redis()
    return numbers


async def peer_numbers(ctx: Context, name: str) -> Numbers:
    """One peer's numbers, imported only now (its module reads the Redis URL on import)."""
    if name == "arq":
        return await run_arq(ctx.redis_url, ctx.sizes.peer_tasks, ctx.sizes.repeats)
    module, cls, _ = PEERS[name]
    peer: Peer = getattr(importlib.import_module(f"benchmarks.peers.{module}"), cls)()
    try:
        return await measure_peer(ctx, peer)
    finally:
        await peer.close()


async def clawq_numbers(ctx: Context) -> Numbers:
    """clawq on the same Redis and counts: Submit, SubmitStream, end to end, Execute p50."""
    count, repeats = ctx.sizes.peer_tasks, ctx.sizes.repeats
    ctx.flush_redis()
    request = task_service_pb2.SubmitRequest(call=read_call())
    async with clawq(server_args(ctx, "redis", workers=0)) as server, stub(server.target) as tasks:
        single = await median_of(
            repeats, lambda: _throughput(load(lambda: tasks.Submit(request), count, 1))
        )
        bulk = await median_of(repeats, lambda: clawq_stream(ctx, server.target, count=count))
    ctx.flush_redis()
    prefix, config = ctx.scratch("prefix").name, no_cache_config(ctx)
    server_argv = server_args(ctx, "redis", workers=0, config=config, prefix=prefix)
    async with (
        clawq(server_argv) as server,
        clawq(worker_args(ctx, prefix, WORKER_CONCURRENCY, config)),
        stub(server.target) as tasks,
    ):
        e2e = await median_of(repeats, lambda: end_to_end(server.target, count, ctx.sizes.batch))
        execute = execute_request()
        calls = max(20, ctx.sizes.latency_calls // 10)
        latency = await median_latency(
            repeats, lambda: load(lambda: execute_ok(tasks, execute), calls, 1)
        )
    ctx.flush_redis()
    return {"single": single, "bulk": bulk, "e2e": e2e, "round_trip_p50": latency.p50}


async def _throughput(sample: Awaitable[object]) -> float:
    result = await sample
    return float(getattr(result, "throughput"))  # noqa: B009 - a Sample, typed loosely here


def figures_of(name: str, mine: Numbers, theirs: Numbers) -> list[Figure]:
    """One peer's lines: clawq's value, the peer's beside it, clawq / peer."""
    bulk = PEERS[name][2]
    lines = [
        Figure.measured(
            single_name(name), mine["single"], "tasks/s", baseline=(name, theirs["single"])
        ),
        Figure.measured(e2e_name(name), mine["e2e"], "tasks/s", baseline=(name, theirs["e2e"])),
    ]
    if bulk:
        lines.insert(1, Figure.measured(
            bulk_name(name, bulk), mine["bulk"], "tasks/s",
            baseline=(f"{name} {bulk}", theirs["bulk"]), target=Target(6.0),
        ))  # fmt: skip
    return lines


def summary(mine: Numbers, peers: dict[str, Numbers]) -> list[Figure]:
    """clawq against the best peer end to end, and Execute's round trip against SAQ's."""
    lines = []
    if peers:
        best = max(peers, key=lambda p: peers[p]["e2e"])
        lines.append(Figure.measured(
            BEST, mine["e2e"], "tasks/s", baseline=(best, peers[best]["e2e"]), target=Target(2.0),
            note=f"clawq: server + 1 `clawq worker` process on Redis, {WORKER_CONCURRENCY} at once",
        ))  # fmt: skip
    else:
        lines.append(Figure.failed(BEST, Status.ERROR, "no peer could be measured"))
    if "SAQ" in peers:
        lines.append(Figure.measured(
            ROUND_TRIP, mine["round_trip_p50"] * 1e3, "ms",
            baseline=("SAQ", peers["SAQ"]["round_trip_p50"] * 1e3),
            target=Target(1.0, at_least=False), note="clawq: server + 1 worker process on Redis",
        ))  # fmt: skip
    else:
        lines.append(Figure.failed(ROUND_TRIP, Status.ERROR, "SAQ could not be measured"))
    return lines


async def peers_figures(ctx: Context) -> list[Figure]:
    """Every peer in turn (a failing one becomes error lines), then the summary."""
    mine = await clawq_numbers(ctx)
    figures: list[Figure] = []
    measured: dict[str, Numbers] = {}
    for name in PEERS:
        try:
            measured[name] = await _twice(ctx, name)
        except Exception as exc:  # one broken peer must not hide the others
            note = f"{type(exc).__name__}: {str(exc)[:100]}"
            figures += [Figure.failed(n, Status.ERROR, note) for n in peer_names(name)]
            continue
        figures += figures_of(name, mine, measured[name])
    return figures + summary(mine, measured)


async def _twice(ctx: Context, name: str) -> Numbers:
    """A peer's numbers, tried a second time if the first attempt failed."""
    try:
        return await peer_numbers(ctx, name)
    except Exception:  # retried once; the second failure is reported
        traceback.print_exc()
        ctx.flush_redis()
        return await peer_numbers(ctx, name)


GROUPS = [Group(NAMES, peers_figures)]
