"""Figure 2: unary Submit and Execute latency and throughput beside a bare grpc.aio echo."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
from google.protobuf.duration_pb2 import Duration

from benchmarks.echo import METHOD
from benchmarks.harness import Figure, Latency, Target, load, median_latency
from benchmarks.payloads import CHANNEL_OPTIONS, read_call, stub
from benchmarks.services import Context, Group, clawq, no_cache_config, server_args
from clawq.v1 import task_service_pb2, task_service_pb2_grpc

IN_FLIGHT = (1, 64)
Calls = Callable[[], Awaitable[object]]


def names(rpc: str) -> tuple[str, ...]:
    """The figure names of one RPC at each concurrency."""
    return tuple(
        f"{rpc} {stat}, {n} in flight" for n in IN_FLIGHT for stat in ("p50", "p99", "throughput")
    )


def execute_request() -> task_service_pb2.ExecuteRequest:
    """Execute of the tiny read_file call, 30 s deadline."""
    return task_service_pb2.ExecuteRequest(call=read_call(), timeout=Duration(seconds=30))


async def echo_latency(ctx: Context, in_flight: int, payload: bytes) -> Latency:
    """The gRPC floor: the echo server's latency and throughput at in_flight."""
    async with grpc.aio.insecure_channel(ctx.echo_target, options=CHANNEL_OPTIONS) as channel:
        echo: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)
        total = ctx.sizes.latency_calls
        await load(lambda: echo(payload), min(total, 100), in_flight)  # warm up
        return await median_latency(
            ctx.sizes.repeats, lambda: load(lambda: echo(payload), total, in_flight)
        )


async def rpc_latency(ctx: Context, calls: Calls, in_flight: int, total: int = 0) -> Latency:
    """An RPC's latency and throughput over total calls at in_flight, after a warm-up."""
    total = total or ctx.sizes.latency_calls
    await load(calls, min(total, 100), in_flight)
    return await median_latency(ctx.sizes.repeats, lambda: load(calls, total, in_flight))


def latency_figures(
    rpc: str, in_flight: int, value: Latency, floor: Latency, throughput_target: Target | None
) -> list[Figure]:
    """p50, p99 (ms) and throughput of one RPC beside the echo's."""
    p50, p99, speed = (f"{rpc} {s}, {in_flight} in flight" for s in ("p50", "p99", "throughput"))
    return [
        Figure.measured(p50, value.p50 * 1e3, "ms", baseline=("echo", floor.p50 * 1e3)),
        Figure.measured(p99, value.p99 * 1e3, "ms", baseline=("echo", floor.p99 * 1e3)),
        Figure.measured(
            speed, value.throughput, "calls/s",
            baseline=("echo", floor.throughput), target=throughput_target,
        ),
    ]  # fmt: skip


async def submit_figures(ctx: Context) -> list[Figure]:
    """Unary Submit into SQLite (no workers) at 1 and 64 in flight beside the echo."""
    request = task_service_pb2.SubmitRequest(call=read_call())
    figures: list[Figure] = []
    async with clawq(server_args(ctx, "sqlite", workers=0)) as server, stub(server.target) as tasks:
        for n in IN_FLIGHT:
            value = await rpc_latency(ctx, lambda: tasks.Submit(request), n)
            floor = await echo_latency(ctx, n, request.SerializeToString())
            target = Target(0.8) if n == 64 else None
            figures += latency_figures("Submit", n, value, floor, target)
    return figures


async def execute_figures(ctx: Context) -> list[Figure]:
    """Uncached Execute (submit, run by in-process workers, result) beside the echo."""
    request = execute_request()
    figures: list[Figure] = []
    args = server_args(ctx, "sqlite", workers=4, config=no_cache_config(ctx))
    async with clawq(args) as server, stub(server.target) as tasks:
        for n in IN_FLIGHT:
            value = await rpc_latency(ctx, lambda: execute_ok(tasks, request), n)
            floor = await echo_latency(ctx, n, request.SerializeToString())
            figures += latency_figures("Execute (uncached)", n, value, floor, None)
    return figures


async def execute_ok(
    tasks: task_service_pb2_grpc.TaskServiceAsyncStub, request: task_service_pb2.ExecuteRequest
) -> task_service_pb2.ExecuteResponse:
    """One Execute that must finish: a timed-out task would flatter the figure."""
    response = await tasks.Execute(request)
    if not response.done:
        raise RuntimeError(f"Execute returned before the task finished: {response.task.state}")
    return response


GROUPS = [
    Group(names("Submit"), submit_figures),
    Group(names("Execute (uncached)"), execute_figures),
]
