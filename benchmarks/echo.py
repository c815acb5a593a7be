"""The gRPC floor: a bare grpc.aio server that answers each unary call with its own bytes."""

from __future__ import annotations

import asyncio
import time

import grpc

METHOD = "/clawq.bench.Echo/Echo"


async def _echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return request


async def serve() -> None:
    """Listen on a free loopback port, print it, and echo until killed."""
    handler = grpc.method_handlers_generic_handler(
        "clawq.bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"listening 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


async def call_echo(channel: grpc.aio.Channel, payload: bytes) -> float:
    """One echo call; its latency in seconds."""
    echo: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)
    started = time.perf_counter()
    await echo(payload)
    return time.perf_counter() - started


if __name__ == "__main__":
    asyncio.run(serve())
