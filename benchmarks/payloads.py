"""The same tiny read_file calls as gRPC requests, SQLite rows and Redis payloads."""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import orjson

from clawq.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc

CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.max_receive_message_length", 64 << 20),
]
FILE = "a.txt"


@contextlib.asynccontextmanager
async def stub(target: str) -> AsyncIterator[task_service_pb2_grpc.TaskServiceAsyncStub]:
    """A raw TaskService stub on its own channel (no client-side conversions to measure)."""
    async with grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
        await channel.channel_ready()
        yield task_service_pb2_grpc.TaskServiceStub(channel)


def read_call(path: str = FILE) -> task_pb2.ToolCall:
    """One tiny read_file call."""
    return task_pb2.ToolCall(tool="read_file", read_file=task_pb2.ReadFileArgs(path=path))


def stream_requests(count: int, batch: int) -> Iterator[task_service_pb2.SubmitStreamRequest]:
    """count read_file calls in SubmitStream requests of batch calls each."""
    call = read_call()
    for start in range(0, count, batch):
        size = min(batch, count - start)
        yield task_service_pb2.SubmitStreamRequest(calls=[call] * size, batch_id=str(start))


async def submit_stream(
    tasks: task_service_pb2_grpc.TaskServiceAsyncStub,
    requests: Iterator[task_service_pb2.SubmitStreamRequest],
    ids: list[str] | None = None,
) -> int:
    """Stream the requests; the number of calls acknowledged without error."""
    acked = 0
    async for response in tasks.SubmitStream(requests):
        for result in response.results:
            if not result.HasField("error"):
                acked += 1
                if ids is not None:
                    ids.append(result.task_id)
    return acked


def record(index: int) -> dict[str, Any]:
    """A task record as a queue would store it: id, call, state and times."""
    now = time.time()
    return {
        "id": f"{int(now * 1000):012x}{index:08x}{os.urandom(4).hex()}",
        "principal": "anonymous",
        "tool": "read_file",
        "args": {"path": FILE, "offset": 0, "limit": 0},
        "side_effect": "read_only",
        "priority": 0,
        "max_attempts": 3,
        "state": "QUEUED",
        "created": now,
        "not_before": now,
    }


def redis_payloads(count: int) -> list[bytes]:
    """count task records as JSON, what a Redis queue pushes."""
    return [orjson.dumps(record(i)) for i in range(count)]


def sqlite_rows(count: int) -> list[tuple[Any, ...]]:
    """count INSERT parameter tuples matching the queue's task table."""
    rows = []
    for i in range(count):
        rec = record(i)
        args = orjson.dumps(rec["args"], option=orjson.OPT_SORT_KEYS)
        digest = hashlib.sha256(b"read_file\0" + args).hexdigest()
        fixed = (rec["id"], rec["principal"], rec["tool"], args, digest, rec["side_effect"])
        rows.append((*fixed, None, 0, 3, 0, rec["created"], rec["not_before"]))
    return rows
