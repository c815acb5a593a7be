"""Figure 2: unary Submit and Execute latency and throughput beside a bare grpc.aio echo."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import grpc
from google.protobuf.duration_pb2 import Duration

from benchmarks.echo import METHOD
from benchmarks.harness import Figure, Latency, Sample, Target, alternating, load
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


@contextlib.asynccontextmanager
async def echo_calls(ctx: Context, payload: bytes) -> AsyncIterator[Calls]:
    """Calls of the echo server (the gRPC floor) with payload, on a channel of their own."""
    async with grpc.aio.insecure_channel(ctx.echo_target, options=CHANNEL_OPTIONS) as channel:
        echo: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)
        yield lambda: echo(payload)


async def side_by_side(
    ctx: Context, calls: Sequence[Calls], in_flight: int, total: int = 0
) -> list[Latency]:
    """Latency and throughput of each kind of call over total calls at in_flight.

    Each is warmed up, then they take turns (harness.alternating).
    """
    total = total or ctx.sizes.latency_calls
    for call in calls:
        await load(call, min(total, 100), in_flight)

    def run(call: Calls) -> Callable[[], Awaitable[Sample]]:
        return lambda: load(call, total, in_flight)

    return await alternating(ctx.sizes.repeats, [run(call) for call in calls])


async def against_echo(
    ctx: Context, call: Calls, in_flight: int, payload: bytes
) -> tuple[Latency, Latency]:
    """An RPC's latency and the echo's (sent payload) at in_flight, taking turns."""
    async with echo_calls(ctx, payload) as echo:
        value, floor = await side_by_side(ctx, [call, echo], in_flight)
    return value, floor


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
            payload = request.SerializeToString()
            value, floor = await against_echo(ctx, lambda: tasks.Submit(request), n, payload)
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
            payload = request.SerializeToString()
            value, floor = await against_echo(ctx, lambda: execute_ok(tasks, request), n, payload)
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
