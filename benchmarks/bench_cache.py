"""Figure 4: Execute of read_file and of a 10,000-entry recursive listing, cached vs uncached."""

from __future__ import annotations

from google.protobuf.duration_pb2 import Duration

from benchmarks.bench_latency import echo_calls, execute_ok, side_by_side
from benchmarks.harness import Figure, Latency, Status, Target
from benchmarks.payloads import read_call, stub
from benchmarks.services import Context, Group, clawq, no_cache_config, server_args
from clawq.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc

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


async def cache_figures(ctx: Context) -> list[Figure]:
    """A server with the cache and one without, running at once and measured in turns."""
    calls = requests(ctx)
    off = server_args(ctx, "sqlite", workers=4, config=no_cache_config(ctx))
    async with (
        clawq(off) as plain,
        clawq(server_args(ctx, "sqlite", workers=4)) as caching,
        stub(plain.target) as uncached_tasks,
        stub(caching.target) as cached_tasks,
        echo_calls(ctx, calls[READ].SerializeToString()) as echo,
    ):
        read, listing = calls[READ], calls[LIST]
        uncached_read, cached_read, floor = await side_by_side(
            ctx,
            [
                lambda: execute_ok(uncached_tasks, read),
                lambda: execute_ok(cached_tasks, read),
                echo,
            ],
            1,
            ctx.sizes.cache_calls,
        )
        # A tenth as many uncached listings: each walks the whole tree.
        uncached_list, cached_list = await side_by_side(
            ctx,
            [
                lambda: execute_ok(uncached_tasks, listing),
                lambda: execute_ok(cached_tasks, listing),
            ],
            1,
            max(5, ctx.sizes.cache_calls // 10),
        )
        hits = {name: await _hit_now(cached_tasks, call) for name, call in calls.items()}
    return [
        _speedup(READ, (cached_read, hits[READ]), uncached_read),
        _speedup(LIST, (cached_list, hits[LIST]), uncached_list),
        _hit((cached_read, hits[READ]), floor),
    ]


async def _hit_now(tasks: task_service_pb2_grpc.TaskServiceAsyncStub, request: Request) -> bool:
    """Whether the server answers request from its cache now (after the measured calls)."""
    return (await execute_ok(tasks, request)).task.result.cached


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
