"""The client's RPC boundary against a tiny real grpc.aio server that answers with rich statuses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

import clawq
from clawq.errors import from_rpc_error, from_status
from clawq.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc


def _status(code: int, message: str, reason: str = "", **details: Any) -> status_pb2.Status:
    status = status_pb2.Status(code=code, message=message)
    if reason:
        info = error_details_pb2.ErrorInfo(reason=reason, domain="clawq", metadata={"k": "v"})
        status.details.add().Pack(info)
    if "violations" in details:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                for f, d in details["violations"]
            ]
        )
        status.details.add().Pack(bad)
    if "retry" in details:
        retry = error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(seconds=2, nanos=5 * 10**8)
        )
        status.details.add().Pack(retry)
    return status


STATUSES = {
    "invalid": _status(
        code_pb2.INVALID_ARGUMENT,
        "bad arguments",
        "TOOL_ARGUMENTS_INVALID",
        violations=[("call.arguments.path", "is required")],
    ),
    "full": _status(code_pb2.RESOURCE_EXHAUSTED, "queue full", "QUEUE_FULL", retry=True),
    "missing": _status(code_pb2.NOT_FOUND, "no such task", "TASK_NOT_FOUND"),
}


@dataclass
class FakeTasks(task_service_pb2_grpc.TaskServiceServicer):
    """Answers from fixed statuses and records the metadata of each call."""

    seen_metadata: list[dict[str, str]] = field(default_factory=list)

    async def GetTask(self, request: Any, context: Any) -> task_service_pb2.GetTaskResponse:
        self.seen_metadata.append(dict(context.invocation_metadata()))
        if request.task_id in STATUSES:
            status = rpc_status.to_status(STATUSES[request.task_id])
            await context.abort(status.code, status.details, status.trailing_metadata)
        if request.task_id == "plain":
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "denied without details")
        task = task_pb2.Task(id=request.task_id, state=task_pb2.TASK_STATE_QUEUED)
        return task_service_pb2.GetTaskResponse(task=task)

    async def Execute(self, request: Any, context: Any) -> task_service_pb2.ExecuteResponse:
        path = request.call.read_file.path
        state = {"ok": task_pb2.TASK_STATE_SUCCEEDED, "slow": task_pb2.TASK_STATE_RUNNING}.get(
            path, task_pb2.TASK_STATE_FAILED
        )
        task = task_pb2.Task(id="t-" + path, call=request.call, state=state)
        if path == "ok":
            task.result.output = b"content"
        else:
            task.error.CopyFrom(task_pb2.TaskError(code="NOT_FOUND", reason="FILE_NOT_FOUND"))
        return task_service_pb2.ExecuteResponse(task=task, done=path != "slow")

    async def SubmitStream(
        self, request_iterator: Any, context: Any
    ) -> AsyncIterator[task_service_pb2.SubmitStreamResponse]:
        async for request in request_iterator:
            response = task_service_pb2.SubmitStreamResponse(batch_id=request.batch_id)
            for i, call in enumerate(request.calls):
                result = response.results.add()
                if call.tool == "bad":
                    result.error.CopyFrom(STATUSES["invalid"])
                else:
                    result.task_id = f"{request.batch_id}/{i}"
            yield response


@dataclass
class Fake:
    target: str
    servicer: FakeTasks


@pytest.fixture
async def fake() -> AsyncIterator[Fake]:
    """A grpc.aio server on a loopback port serving FakeTasks."""
    server = grpc.aio.server()
    # The stubs mark every RPC abstract; at run time the rest answer UNIMPLEMENTED.
    servicer = FakeTasks()  # type: ignore[abstract]
    task_service_pb2_grpc.add_TaskServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield Fake(f"127.0.0.1:{port}", servicer)
    await server.stop(None)


async def test_rich_status_becomes_typed_error(fake: Fake) -> None:
    """INVALID_ARGUMENT with details raises InvalidArgument with reason, fields and metadata."""
    async with clawq.AsyncClient(fake.target) as client:
        with pytest.raises(clawq.InvalidArgument) as info:
            await client.get("invalid")
    error = info.value
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.reason, error.message, error.metadata) == (
        "TOOL_ARGUMENTS_INVALID",
        "bad arguments",
        {"k": "v"},
    )
    assert error.field_violations == [("call.arguments.path", "is required")]
    assert error.retry_after is None
    assert isinstance(error.__cause__, grpc.aio.AioRpcError)
    assert str(error) == (
        "INVALID_ARGUMENT (TOOL_ARGUMENTS_INVALID): bad arguments"
        " [call.arguments.path: is required]"
    )


async def test_retry_info_is_decoded(fake: Fake) -> None:
    """RESOURCE_EXHAUSTED carries retry_after in seconds from RetryInfo."""
    async with clawq.AsyncClient(fake.target) as client:
        with pytest.raises(clawq.ResourceExhausted) as info:
            await client.get("full")
    assert info.value.retry_after == 2.5
    assert info.value.reason == "QUEUE_FULL"


async def test_status_without_details(fake: Fake) -> None:
    """A status without details still maps to its class, with an empty reason."""
    async with clawq.AsyncClient(fake.target) as client:
        with pytest.raises(clawq.PermissionDenied) as info:
            await client.get("plain")
    assert (info.value.reason, info.value.message) == ("", "denied without details")


async def test_unreachable_server_is_unavailable() -> None:
    """A server that is not there raises Unavailable."""
    async with clawq.AsyncClient("127.0.0.1:1", timeout=5) as client:
        with pytest.raises(clawq.Unavailable):
            await client.get("x")


@pytest.mark.parametrize(
    ("details", "expected"),
    [("Internal error from Core", clawq.Unavailable), ("server blew up", clawq.Internal)],
)
def test_a_message_grpc_could_not_send_is_unavailable(
    details: str, expected: type[clawq.Error]
) -> None:
    """grpc reports a stream write to a broken connection as a bare INTERNAL of its own;
    that is an unreachable server, while an INTERNAL from the server stays INTERNAL."""
    local = grpc.aio.AioRpcError(
        grpc.StatusCode.INTERNAL, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details
    )
    assert type(from_rpc_error(local)) is expected


async def test_token_is_sent_as_bearer_metadata(fake: Fake) -> None:
    """The token travels as `authorization: Bearer <token>` on every call."""
    async with clawq.AsyncClient(fake.target, token="s3cret") as client:
        await client.get("a")
        await client.get("b")
    assert [m.get("authorization") for m in fake.servicer.seen_metadata] == ["Bearer s3cret"] * 2
    async with clawq.AsyncClient(fake.target) as client:
        await client.get("c")
    assert "authorization" not in fake.servicer.seen_metadata[-1]


async def test_sync_client_raises_the_same_exceptions(fake: Fake) -> None:
    """The blocking Client raises the same typed errors as the async one."""

    def use() -> tuple[str, clawq.Error]:
        with clawq.Client(fake.target) as client:
            task = client.get("found")
            try:
                client.get("missing")
            except clawq.Error as exc:
                return task.id, exc
        raise AssertionError("no error raised")

    task_id, error = await asyncio.to_thread(use)
    assert task_id == "found"
    assert isinstance(error, clawq.NotFound)
    assert error.reason == "TASK_NOT_FOUND"


async def test_execute_outcomes(fake: Fake) -> None:
    """execute returns a Result, raises TaskFailed on failure and DeadlineExceeded on timeout."""
    async with clawq.AsyncClient(fake.target) as client:
        result = await client.execute("read_file", path="ok")
        assert (result.output, result.task_id) == ("content", "t-ok")
        with pytest.raises(clawq.TaskFailed) as failed:
            await client.execute("read_file", path="gone")
        assert (failed.value.code, failed.value.reason) == ("NOT_FOUND", "FILE_NOT_FOUND")
        assert failed.value.task.state == "FAILED"
        with pytest.raises(clawq.DeadlineExceeded) as slow:
            await client.execute("read_file", path="slow", timeout=0.1)
        assert slow.value.task is not None
        assert slow.value.task.state == "RUNNING"


def _calls() -> Iterator[clawq.Call]:
    yield clawq.Call("read_file", path="0")
    yield clawq.Call("bad")
    yield clawq.Call("plugin", blob=b"not json")  # refused locally
    yield clawq.Call("read_file", path="3")
    yield clawq.Call("read_file", path="4")
    yield clawq.Call("plugin", blob=b"last")  # refused locally, after the last batch


async def test_submit_stream_matches_acks_to_calls(fake: Fake) -> None:
    """Every call gets one ack with its own index; rejected ones carry an error, none stop."""
    async with clawq.AsyncClient(fake.target) as client:
        acks = [ack async for ack in client.submit_many(_calls(), batch_size=2)]
    assert [a.index for a in acks] == [0, 1, 2, 3, 4, 5]
    assert [a.accepted for a in acks] == [True, False, False, True, True, False]
    assert [a.task_id for a in acks if a.accepted] == ["0/0", "3/0", "3/1"]
    assert isinstance(acks[1].error, clawq.InvalidArgument)
    assert acks[1].error.reason == "TOOL_ARGUMENTS_INVALID"
    assert isinstance(acks[2].error, clawq.InvalidArgument)


async def test_submit_stream_hands_back_the_iterables_exception(fake: Fake) -> None:
    """An exception raised by the caller's iterable surfaces after the acks it produced."""

    def broken() -> Iterator[clawq.Call]:
        yield clawq.Call("read_file", path="0")
        raise RuntimeError("source broke")

    acks: list[clawq.Ack] = []

    async def drain(client: clawq.AsyncClient) -> None:
        async for ack in client.submit_stream(broken()):
            acks.append(ack)

    async with clawq.AsyncClient(fake.target) as client:
        with pytest.raises(RuntimeError, match="source broke"):
            await drain(client)
    assert [a.task_id for a in acks] == ["0/0"]


async def test_sync_submit_stream_is_an_iterator(fake: Fake) -> None:
    """The blocking client's submit_many is an ordinary iterator of acks."""

    def use() -> list[clawq.Ack]:
        with clawq.Client(fake.target) as client:
            return list(client.submit_many(_calls(), batch_size=3))

    acks = await asyncio.to_thread(use)
    assert [a.accepted for a in acks] == [True, False, False, True, True, False]


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (code_pb2.INVALID_ARGUMENT, clawq.InvalidArgument),
        (code_pb2.NOT_FOUND, clawq.NotFound),
        (code_pb2.ALREADY_EXISTS, clawq.AlreadyExists),
        (code_pb2.FAILED_PRECONDITION, clawq.FailedPrecondition),
        (code_pb2.PERMISSION_DENIED, clawq.PermissionDenied),
        (code_pb2.RESOURCE_EXHAUSTED, clawq.ResourceExhausted),
        (code_pb2.UNAUTHENTICATED, clawq.Unauthenticated),
        (code_pb2.UNAVAILABLE, clawq.Unavailable),
        (code_pb2.DEADLINE_EXCEEDED, clawq.DeadlineExceeded),
        (code_pb2.ABORTED, clawq.Aborted),
        (code_pb2.INTERNAL, clawq.Internal),
        (code_pb2.UNIMPLEMENTED, clawq.Error),
    ],
)
def test_each_code_has_its_class(code: int, cls: type[clawq.Error]) -> None:
    """Each status code maps to the exception named after it (others to Error)."""
    error = from_status(_status(code, "m", "R"))
    assert type(error) is cls
    assert error.code.value[0] == code


def test_unknown_detail_types_are_ignored() -> None:
    """Details of types the client does not know are skipped, not fatal."""
    status = _status(code_pb2.INTERNAL, "m", "INTERNAL")
    status.details.append(any_pb2.Any(type_url="type.example/Unknown", value=b"\x01"))
    assert from_status(status).reason == "INTERNAL"
