"""A clawq worker written against the generated stubs only: it serves the plugin tool
"uppercase" over WorkerService (Lease → run → Complete, with heartbeats while it runs).

    python examples/python_worker.py --target 127.0.0.1:50051 [--token T]

The server must declare the tool in its config so calls to it are admitted:

    [[tools]]
    name = "uppercase"
    side_effect = "read_only"
    schema = { type = "object", properties = { text = { type = "string" } }, required = ["text"] }
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket

import grpc
from google.protobuf import duration_pb2, json_format, struct_pb2

from clawq.v1 import task_pb2, worker_service_pb2, worker_service_pb2_grpc

LEASE = duration_pb2.Duration(seconds=30)


def run_tool(task: task_pb2.Task) -> task_pb2.TaskResult:
    """The tool itself: upper-case the text argument."""
    args = json_format.MessageToDict(task.call.arguments)
    text = str(args["text"]).upper()
    payload = struct_pb2.Struct()
    payload.update({"length": len(text)})
    return task_pb2.TaskResult(output=text.encode(), payload=payload)


async def serve(target: str, token: str | None, stop: asyncio.Event) -> None:
    """Lease and complete tasks until stop is set."""
    metadata = [("authorization", f"Bearer {token}")] if token else []
    worker_id = f"py-example-{socket.gethostname()}"
    async with grpc.aio.insecure_channel(target) as channel:
        stub = worker_service_pb2_grpc.WorkerServiceStub(channel)
        while not stop.is_set():
            try:
                leased = await stub.Lease(
                    worker_service_pb2.LeaseRequest(
                        worker_id=worker_id,
                        tools=["uppercase"],
                        max_tasks=16,
                        lease_duration=LEASE,
                        wait=duration_pb2.Duration(seconds=2),
                    ),
                    metadata=metadata,
                    timeout=10,
                )
            except grpc.aio.AioRpcError as error:
                print(f"lease failed: {error.code().name}", flush=True)
                await asyncio.sleep(1)
                continue
            for item in leased.tasks:
                ref = worker_service_pb2.LeaseRef(
                    task_id=item.task.id, lease_token=item.lease_token
                )
                try:
                    done = worker_service_pb2.CompleteRequest(lease=ref, result=run_tool(item.task))
                except (KeyError, ValueError) as error:
                    done = worker_service_pb2.CompleteRequest(
                        lease=ref,
                        error=task_pb2.TaskError(
                            code="INVALID_ARGUMENT", reason="BAD_ARGUMENTS", message=str(error)
                        ),
                    )
                try:
                    await stub.Complete(done, metadata=metadata, timeout=10)
                except grpc.aio.AioRpcError as error:  # ABORTED: the lease was lost meanwhile
                    print(f"complete refused: {error.code().name}", flush=True)


def main() -> None:
    """Parse flags and run until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", default="127.0.0.1:50051")
    parser.add_argument("--token")
    args = parser.parse_args()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print("worker ready", flush=True)
        await serve(args.target, args.token, stop)

    asyncio.run(run())


if __name__ == "__main__":
    main()
