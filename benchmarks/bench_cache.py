"""Figure 4: Execute of read_file and of a 10,000-entry recursive listing, cached vs uncached."""

from __future__ import annotations

from google.protobuf.duration_pb2 import Duration

from benchmarks.bench_latency import echo_latency, execute_ok, rpc_latency
from benchmarks.harness import Figure, Latency, Status, Target
from benchmarks.payloads import read_call, stub
from benchmarks.services import Context, Group, clawq, no_cache_config, server_args
from clawq.v1 import task_pb2, task_service_pb2

READ = "cache: read_file via Execute, cached vs uncached"
LIST = "cache: recursive listing via Execute, cached vs uncached"
HIT = "cache: cached Execute p50 vs echo p50, 1 in flight"
FANOUT = 100
Request = task_service_pb2.ExecuteRequest


def make_tree(ctx: Context) -> str:
    """A tree of tree_entries entries in the workspace (FANOUT directories of files)."""
    tree = ctx.root / "tree"
    if not tree.exists():
        for d in range(FANOUT):
            sub = tree / f"d{d:03d}"
            sub.mkdir(parents=True)
            for f in range(max(1, ctx.sizes.tree_entries // FANOUT - 1)):
                (sub / f"f{f:04d}.txt").write_bytes(b"")
    return "tree"


def requests(ctx: Context) -> dict[str, Request]:
    """Execute requests of the small read and of the recursive listing."""
    listing = task_pb2.ListDirectoryArgs(
        path=make_tree(ctx), recursive=True, max_entries=ctx.sizes.tree_entries
    )
    call = task_pb2.ToolCall(tool="list_directory", list_directory=listing)
    deadline = Duration(seconds=60)
    return {
        READ: Request(call=read_call(), timeout=deadline),
        LIST: Request(call=call, timeout=deadline),
    }


async def measure(ctx: Context, target: str, request: Request, total: int) -> tuple[Latency, bool]:
    """Execute latency at 1 in flight, and whether the answer after the run was a cache hit."""
    async with stub(target) as tasks:
        latency = await rpc_latency(ctx, lambda: execute_ok(tasks, request), 1, total)
        last = await execute_ok(tasks, request)
    return latency, last.task.result.cached


async def cache_figures(ctx: Context) -> list[Figure]:
    """Cached and uncached servers side by side; pending if the cache never answers."""
    calls = requests(ctx)
    totals = {READ: ctx.sizes.cache_calls, LIST: max(5, ctx.sizes.cache_calls // 10)}
    uncached: dict[str, Latency] = {}
    cached: dict[str, tuple[Latency, bool]] = {}
    off = server_args(ctx, "sqlite", workers=4, config=no_cache_config(ctx))
    async with clawq(off) as server:
        for name, request in calls.items():
            uncached[name] = (await measure(ctx, server.target, request, totals[name]))[0]
    async with clawq(server_args(ctx, "sqlite", workers=4)) as server:
        for name, request in calls.items():
            cached[name] = await measure(ctx, server.target, request, ctx.sizes.cache_calls)
    floor = await echo_latency(ctx, 1, calls[READ].SerializeToString())
    return [
        *(_speedup(name, cached[name], uncached[name]) for name in calls),
        _hit(cached[READ], floor),
    ]


def _speedup(name: str, cached: tuple[Latency, bool], uncached: Latency) -> Figure:
    latency, hit = cached
    if not hit:
        return Figure.failed(name, Status.PENDING, "the server answered no call from its cache")
    target = Target(20.0) if name == LIST else Target(3.0)
    return Figure.measured(
        name, 1 / latency.p50, "calls/s", baseline=("uncached", 1 / uncached.p50),
        target=target, note="1 in flight, from p50 latency",
    )  # fmt: skip


def _hit(cached: tuple[Latency, bool], floor: Latency) -> Figure:
    latency, hit = cached
    if not hit:
        return Figure.failed(HIT, Status.PENDING, "the server answered no call from its cache")
    return Figure.measured(
        HIT, latency.p50 * 1e3, "ms",
        baseline=("echo p50", floor.p50 * 1e3), target=Target(1.3, at_least=False),
    )  # fmt: skip


GROUPS = [Group((READ, LIST, HIT), cache_figures)]
