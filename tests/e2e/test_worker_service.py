"""WorkerService under bad input: the canonical code naming the field, nothing stuck, and an
audit record of each completion, accepted or refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import grpc
import orjson
import pytest
from google.protobuf.duration_pb2 import Duration

import clawq
from clawq.v1 import task_pb2 as pb
from clawq.v1 import worker_service_pb2 as ws
from clawq.v1 import worker_service_pb2_grpc as ws_grpc
from clawq_server.config import AuthConfig, default_principal, hash_token
from tests.conftest import Served, ServerFactory
from tests.e2e.rpc import rich
from tests.interop.test_python_worker import UPPERCASE

AGENT = [("authorization", "Bearer agent-token")]
WORKER = [("authorization", "Bearer worker-token")]


@pytest.fixture
async def served(server_factory: ServerFactory, tmp_path: Path) -> AsyncIterator[Served]:
    """A server without in-process workers: "agent" submits, "worker" (which may run
    read_file and uppercase only) leases."""
    root = tmp_path / "workspace"
    root.mkdir(exist_ok=True)
    base = default_principal([root])
    principals = {
        "agent": replace(base, name="agent", worker=False, admin=False),
        "worker": replace(
            base, name="worker", admin=False, tools=frozenset({"read_file", "uppercase"})
        ),
    }
    auth = AuthConfig(
        tokens={hash_token("agent-token"): "agent", hash_token("worker-token"): "worker"},
        anonymous=False,
    )
    async with server_factory(
        workers=0, auth=auth, principals=principals, remote_tools=(UPPERCASE,)
    ) as server:
        yield server


@pytest.fixture
async def stub(served: Served) -> AsyncIterator[ws_grpc.WorkerServiceAsyncStub]:
    """A raw WorkerService stub."""
    async with grpc.aio.insecure_channel(served.target) as channel:
        yield ws_grpc.WorkerServiceStub(channel)


async def _submit(served: Served, tool: str, **args: object) -> str:
    async with clawq.AsyncClient(served.target, token="agent-token") as agent:
        return await agent.submit(tool, **args)


def _lease(*tools: str, **fields: object) -> ws.LeaseRequest:
    return ws.LeaseRequest(worker_id="w1", tools=tools, max_tasks=10, **fields)  # type: ignore[arg-type]


async def _refused(call: object, code: grpc.StatusCode, field: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    assert (rich(caught.value).code, rich(caught.value).fields) == (code, [field])


@pytest.mark.parametrize("seconds", [10**12, 2**62, 0, -5])
async def test_a_lease_duration_out_of_range_is_refused_and_leases_nothing(
    served: Served, stub: ws_grpc.WorkerServiceAsyncStub, seconds: int
) -> None:
    """A lease of zero, a negative one or one past an hour is INVALID_ARGUMENT; the task
    stays queued for the next lease."""
    await _submit(served, "read_file", path="a")
    request = _lease("read_file", lease_duration=Duration(seconds=seconds))
    await _refused(
        stub.Lease(request, metadata=WORKER), grpc.StatusCode.INVALID_ARGUMENT, "lease_duration"
    )
    leased = await stub.Lease(_lease("read_file"), metadata=WORKER)
    assert len(leased.tasks) == 1


async def test_a_huge_wait_is_capped_not_an_error(
    served: Served, stub: ws_grpc.WorkerServiceAsyncStub
) -> None:
    """A wait no datetime could hold is cut to the longest wait, and a task waiting is
    handed out at once."""
    await _submit(served, "read_file", path="a")
    request = _lease("read_file", wait=Duration(seconds=2**62))
    assert len((await stub.Lease(request, metadata=WORKER, timeout=10)).tasks) == 1


async def test_lists_too_long_are_refused(stub: ws_grpc.WorkerServiceAsyncStub) -> None:
    """Too many tools to lease or leases to heartbeat are INVALID_ARGUMENT, not a backend
    error a client would retry."""
    many_tools = _lease(*(f"t{i}" for i in range(1001)))
    await _refused(
        stub.Lease(many_tools, metadata=WORKER), grpc.StatusCode.INVALID_ARGUMENT, "tools"
    )
    refs = [ws.LeaseRef(task_id=f"{i:032x}", lease_token="x") for i in range(1001)]
    beat = stub.Heartbeat(ws.HeartbeatRequest(worker_id="w1", leases=refs), metadata=WORKER)
    await _refused(beat, grpc.StatusCode.INVALID_ARGUMENT, "leases")


async def test_a_worker_leases_only_tools_its_principal_may_run(
    served: Served, stub: ws_grpc.WorkerServiceAsyncStub
) -> None:
    """Tasks of a tool outside the worker principal's list are never handed to it."""
    await _submit(served, "list_directory", path=".")
    await _refused(
        stub.Lease(_lease("list_directory"), metadata=WORKER),
        grpc.StatusCode.PERMISSION_DENIED,
        "tools",
    )
    await _submit(served, "read_file", path="a")
    leased = await stub.Lease(_lease("list_directory", "read_file"), metadata=WORKER)
    assert [t.task.call.tool for t in leased.tasks] == ["read_file"]


async def test_completions_are_checked_and_audited(
    served: Served, stub: ws_grpc.WorkerServiceAsyncStub
) -> None:
    """A completion with both a result and an error, or a NaN in its payload, names the field;
    a forged token is refused; the good completion and the refusals are all audited."""
    task_id = await _submit(served, "uppercase", text="hi")
    [leased] = (await stub.Lease(_lease("uppercase"), metadata=WORKER)).tasks
    ref = ws.LeaseRef(task_id=task_id, lease_token=leased.lease_token)
    both = ws.CompleteRequest(
        lease=ref, result=pb.TaskResult(output=b"HI"), error=pb.TaskError(code="INTERNAL")
    )
    await _refused(stub.Complete(both, metadata=WORKER), grpc.StatusCode.INVALID_ARGUMENT, "result")
    nan = ws.CompleteRequest(lease=ref, result=pb.TaskResult(output=b"HI"))
    nan.result.payload.update({"length": float("nan")})
    await _refused(
        stub.Complete(nan, metadata=WORKER), grpc.StatusCode.INVALID_ARGUMENT, "result.payload"
    )
    forged = ws.CompleteRequest(
        lease=ws.LeaseRef(task_id=task_id, lease_token="forged"),
        result=pb.TaskResult(output=b"HI"),
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Complete(forged, metadata=WORKER)
    assert caught.value.code() == grpc.StatusCode.ABORTED
    good = ws.CompleteRequest(lease=ref, result=pb.TaskResult(output=b"HI"))
    assert (await stub.Complete(good, metadata=WORKER)).state == pb.TASK_STATE_SUCCEEDED
    assert served.app.audit is not None
    await served.app.audit.close()  # writes every record queued so far
    audit = (served.db.parent / "audit.jsonl").read_bytes()
    records = [orjson.loads(line) for line in audit.splitlines()]
    remote = [r for r in records if r.get("task_id") == task_id]
    assert [(r["decision"], r["reason"]) for r in remote] == [
        ("deny", "INVALID_ARGUMENT"),
        ("deny", "INVALID_ARGUMENT"),
        ("deny", "LEASE_LOST"),
        ("allow", ""),
    ]
    assert (remote[-1]["worker"], remote[-1]["tool"], remote[-1]["outcome"]) == (
        "worker",
        "uppercase",
        "SUCCEEDED",
    )
