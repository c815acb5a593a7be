"""Bad input gets INVALID_ARGUMENT with the field named, no stack trace, and no stored task."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.struct_pb2 import Struct
from google.rpc import error_details_pb2

from clawq.v1 import task_pb2 as pb
from clawq.v1 import task_service_pb2 as ts
from clawq.v1 import task_service_pb2_grpc as ts_grpc
from tests.conftest import Served, ServerFactory
from tests.e2e.rpc import rich


@pytest.fixture
async def stub(served: Served) -> AsyncIterator[ts_grpc.TaskServiceAsyncStub]:
    """A raw TaskService stub on the test server."""
    async with grpc.aio.insecure_channel(served.target) as channel:
        yield ts_grpc.TaskServiceStub(channel)


async def _count(stub: ts_grpc.TaskServiceAsyncStub) -> int:
    page = await stub.ListTasks(ts.ListTasksRequest(page_size=1000))
    return len(page.tasks)


def _struct(**values: Any) -> Struct:
    message = Struct()
    message.update(values)
    return message


BAD_CALLS = [
    ("unknown tool", pb.ToolCall(tool="nope"), "TOOL_NOT_FOUND", grpc.StatusCode.INVALID_ARGUMENT),
    (
        "missing argument",
        pb.ToolCall(tool="read_file", arguments=_struct()),
        "TOOL_ARGUMENTS_INVALID",
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "wrong type",
        pb.ToolCall(tool="read_file", arguments=_struct(path=12)),
        "TOOL_ARGUMENTS_INVALID",
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "unknown argument",
        pb.ToolCall(tool="read_file", arguments=_struct(path="a", color="red")),
        "TOOL_ARGUMENTS_INVALID",
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "negative timeout",
        pb.ToolCall(
            tool="execute_command",
            execute_command=pb.ExecuteCommandArgs(argv=["ls"], timeout_s=-1),
        ),
        "TOOL_ARGUMENTS_INVALID",
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "invalid idempotency key",
        pb.ToolCall(tool="read_file", read_file=pb.ReadFileArgs(path="a"), idempotency_key="a b"),
        "INVALID_ARGUMENT",
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "mismatched typed arguments",
        pb.ToolCall(tool="read_file", write_file=pb.WriteFileArgs(path="a")),
        "INVALID_ARGUMENT",
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "priority out of range",
        pb.ToolCall(tool="read_file", read_file=pb.ReadFileArgs(path="a"), priority=99),
        "INVALID_ARGUMENT",
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "negative delay",
        pb.ToolCall(
            tool="read_file", read_file=pb.ReadFileArgs(path="a"), delay=Duration(seconds=-5)
        ),
        "INVALID_ARGUMENT",
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
]


@pytest.mark.parametrize(
    ("case", "call", "reason", "code"), BAD_CALLS, ids=[c[0] for c in BAD_CALLS]
)
async def test_bad_submit_is_refused_and_stores_nothing(
    stub: ts_grpc.TaskServiceAsyncStub,
    case: str,
    call: pb.ToolCall,
    reason: str,
    code: grpc.StatusCode,
) -> None:
    """Each kind of bad call gets its canonical code and reason, and nothing is stored."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Submit(ts.SubmitRequest(call=call))
    error = rich(caught.value)
    assert (error.code, error.reason) == (code, reason), case
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        assert error.fields
        assert all(f.startswith("call.") for f in error.fields)
    assert "Traceback" not in error.message
    assert await _count(stub) == 0


async def test_bad_item_in_batch_refuses_the_whole_batch(
    stub: ts_grpc.TaskServiceAsyncStub,
) -> None:
    """SubmitBatch is atomic: one bad call names calls[i] and nothing is stored."""
    good = pb.ToolCall(tool="read_file", read_file=pb.ReadFileArgs(path="a"))
    bad = pb.ToolCall(tool="read_file", arguments=_struct(path=3))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SubmitBatch(ts.SubmitBatchRequest(calls=[good, bad, good]))
    error = rich(caught.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.fields == ["calls[1].args.path"]
    assert await _count(stub) == 0


@pytest.mark.parametrize("size", [0, 10_001])
async def test_empty_and_oversized_batches_are_refused(
    stub: ts_grpc.TaskServiceAsyncStub, size: int
) -> None:
    """A batch must hold 1 to 10,000 calls."""
    call = pb.ToolCall(tool="read_file", read_file=pb.ReadFileArgs(path="a"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SubmitBatch(ts.SubmitBatchRequest(calls=[call] * size))
    assert rich(caught.value).fields == ["calls"]
    assert await _count(stub) == 0


async def test_stream_rejects_bad_items_and_accepts_the_rest(
    stub: ts_grpc.TaskServiceAsyncStub,
) -> None:
    """SubmitStream acks each batch with per-item results; a bad item does not sink the batch."""
    good = pb.ToolCall(tool="read_file", read_file=pb.ReadFileArgs(path="a"))
    bad = pb.ToolCall(tool="nope")

    async def batches() -> AsyncIterator[ts.SubmitStreamRequest]:
        yield ts.SubmitStreamRequest(batch_id="b1", calls=[good, bad, good])

    acks = [ack async for ack in stub.SubmitStream(batches())]
    assert [a.batch_id for a in acks] == ["b1"]
    results = acks[0].results
    assert [bool(r.task_id) for r in results] == [True, False, True]
    assert results[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert await _count(stub) == 2


def _token(cursor: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(cursor)).decode()


@pytest.mark.parametrize(
    "token",
    ["not-a-token!", _token(["NaN", "x"]), _token([True, "x"]), _token(["12", 5]), _token(3)],
)
async def test_malformed_page_token_is_invalid(
    stub: ts_grpc.TaskServiceAsyncStub, token: str
) -> None:
    """A page token the server did not issue, even well-formed JSON, is INVALID_ARGUMENT
    naming page_token."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListTasks(ts.ListTasksRequest(page_token=token))
    assert rich(caught.value).fields == ["page_token"]


async def test_negative_wait_timeouts_are_invalid(stub: ts_grpc.TaskServiceAsyncStub) -> None:
    """Execute and WaitTask refuse a negative timeout, even one of nanoseconds only,
    naming the field; nothing is stored."""
    call = pb.ToolCall(tool="read_file", read_file=pb.ReadFileArgs(path="a"))
    for timeout in (Duration(seconds=-1), Duration(nanos=-1)):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Execute(ts.ExecuteRequest(call=call, timeout=timeout))
        assert (rich(caught.value).code, rich(caught.value).fields) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            ["timeout"],
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.WaitTask(ts.WaitTaskRequest(task_id="0" * 32, timeout=timeout))
        assert rich(caught.value).fields == ["timeout"]
    assert await _count(stub) == 0


async def test_unknown_task_is_not_found(stub: ts_grpc.TaskServiceAsyncStub) -> None:
    """GetTask of an id that does not exist is NOT_FOUND with reason TASK_NOT_FOUND."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetTask(ts.GetTaskRequest(task_id="0" * 32))
    assert (rich(caught.value).code, rich(caught.value).reason) == (
        grpc.StatusCode.NOT_FOUND,
        "TASK_NOT_FOUND",
    )


async def test_idempotency_key_reused_with_other_args(stub: ts_grpc.TaskServiceAsyncStub) -> None:
    """The same key with the same call returns the same task; with another call, ALREADY_EXISTS."""
    first = pb.ToolCall(tool="read_file", read_file=pb.ReadFileArgs(path="a"), idempotency_key="k1")
    a = await stub.Submit(ts.SubmitRequest(call=first))
    b = await stub.Submit(ts.SubmitRequest(call=first))
    assert a.task_id == b.task_id
    assert b.existing
    other = pb.ToolCall(tool="read_file", read_file=pb.ReadFileArgs(path="b"), idempotency_key="k1")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Submit(ts.SubmitRequest(call=other))
    assert rich(caught.value).reason == "IDEMPOTENCY_KEY_REUSED"
    assert rich(caught.value).fields == ["call.idempotency_key"]
    fresh = pb.ToolCall(tool="read_file", read_file=pb.ReadFileArgs(path="c"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SubmitBatch(ts.SubmitBatchRequest(calls=[fresh, fresh, other]))
    assert (rich(caught.value).reason, rich(caught.value).fields) == (
        "IDEMPOTENCY_KEY_REUSED",
        ["calls[2].idempotency_key"],
    )

    async def batches() -> AsyncIterator[ts.SubmitStreamRequest]:
        yield ts.SubmitStreamRequest(calls=[fresh, other])

    [ack] = [ack async for ack in stub.SubmitStream(batches())]
    assert ack.results[0].task_id
    assert ack.results[1].error.code == grpc.StatusCode.ALREADY_EXISTS.value[0]
    bad = error_details_pb2.BadRequest()
    assert [d.Unpack(bad) for d in ack.results[1].error.details].count(True) == 1
    assert [v.field for v in bad.field_violations] == ["calls[1].idempotency_key"]
    assert await _count(stub) == 2


FIELD_CASES = [
    ("delay past a year", pb.ToolCall(tool="read_file", delay=Duration(seconds=3 * 10**11))),
    ("delay past a datetime", pb.ToolCall(tool="read_file", delay=Duration(seconds=10**15))),
    (
        "unknown enum value",
        pb.ToolCall(
            tool="write_file", write_file=pb.WriteFileArgs(mode=pb.WriteMode.ValueType(99))
        ),
    ),
    (
        "NaN number",
        pb.ToolCall(
            tool="execute_command",
            execute_command=pb.ExecuteCommandArgs(argv=["ls"], timeout_s=float("nan")),
        ),
    ),
    ("infinite number", pb.ToolCall(tool="read_file", arguments=_struct(path="a", limit=1e999))),
    ("NUL in a path", pb.ToolCall(tool="read_file", read_file=pb.ReadFileArgs(path="a\0b"))),
    ("huge tool name", pb.ToolCall(tool="t" * 100_000)),
]
FIELDS = [
    "call.delay",
    "call.delay",
    "call.write_file.mode",
    "call.args.timeout_s",
    "call.arguments",
    "call.args.path",
    "call.tool",
]


@pytest.mark.parametrize(
    ("case", "call", "field"),
    [(*case, field) for case, field in zip(FIELD_CASES, FIELDS, strict=True)],
    ids=[c[0] for c in FIELD_CASES],
)
async def test_out_of_range_values_name_their_field(
    stub: ts_grpc.TaskServiceAsyncStub, case: str, call: pb.ToolCall, field: str
) -> None:
    """Values no conversion can hold are INVALID_ARGUMENT naming the field, in a single
    call and in a stream whose other calls are accepted."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Submit(ts.SubmitRequest(call=call))
    assert (rich(caught.value).code, rich(caught.value).fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        [field],
    ), case
    assert len(rich(caught.value).message.encode()) <= 512
    good = pb.ToolCall(tool="read_file", read_file=pb.ReadFileArgs(path="a"))

    async def batches() -> AsyncIterator[ts.SubmitStreamRequest]:
        yield ts.SubmitStreamRequest(batch_id="b", calls=[good, call, good])

    acks = [ack async for ack in stub.SubmitStream(batches())]
    assert [bool(r.task_id) for r in acks[0].results] == [True, False, True]
    assert acks[0].results[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert await _count(stub) == 2


async def test_out_of_range_list_bounds_are_invalid(stub: ts_grpc.TaskServiceAsyncStub) -> None:
    """A create-time bound no datetime can hold is INVALID_ARGUMENT naming it."""
    request = ts.ListTasksRequest()
    request.create_time_after.seconds = 10**15
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListTasks(request)
    assert rich(caught.value).fields == ["create_time_after"]


@pytest.mark.parametrize("char", ["x", "€", "😀"])
async def test_an_echoed_id_is_clipped_to_fit_the_status(
    stub: ts_grpc.TaskServiceAsyncStub, char: str
) -> None:
    """A huge task id, in ASCII or in characters of 3 and 4 UTF-8 bytes, gets NOT_FOUND with
    a short message, not a broken stream."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetTask(ts.GetTaskRequest(task_id=char * 300_000))
    assert rich(caught.value).code == grpc.StatusCode.NOT_FOUND
    assert rich(caught.value).reason == "TASK_NOT_FOUND"
    assert len(rich(caught.value).message.encode()) <= 512


def _refusals(path: Path) -> list[dict[str, Any]]:
    records = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    return [r for r in records if r["decision"] == "deny"]


async def test_every_refused_request_is_audited(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """Calls too malformed to convert, a batch refused as a whole (and its good calls), an
    empty batch and a reused idempotency key each leave a deny record."""
    good = pb.ToolCall(tool="read_file", read_file=pb.ReadFileArgs(path="g"))
    wrong_oneof = pb.ToolCall(tool="read_file", write_file=pb.WriteFileArgs(path="a"))
    keyed = pb.ToolCall(tool="read_file", read_file=pb.ReadFileArgs(path="k"), idempotency_key="k")
    reused = pb.ToolCall(tool="read_file", read_file=pb.ReadFileArgs(path="o"), idempotency_key="k")
    async with (
        server_factory() as served,
        grpc.aio.insecure_channel(served.target) as channel,
    ):
        stub = ts_grpc.TaskServiceStub(channel)
        for request in (
            ts.SubmitRequest(call=wrong_oneof),
            ts.SubmitRequest(call=pb.ToolCall(tool="t" * 5000)),
        ):
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.Submit(request)
        for batch in ([good, wrong_oneof], []):
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.SubmitBatch(ts.SubmitBatchRequest(calls=batch))
        await stub.Submit(ts.SubmitRequest(call=keyed))
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Submit(ts.SubmitRequest(call=reused))
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Execute(ts.ExecuteRequest(call=good, timeout=Duration(seconds=-1)))
    # Read once the server has stopped, which writes every queued record.
    denied = [(r["tool"], r["args"], r["reason"]) for r in _refusals(tmp_path / "audit.jsonl")]
    assert denied == [
        ("read_file", {}, "INVALID_ARGUMENT"),
        ("t" * 128, {}, "TOOL_NOT_FOUND"),
        ("read_file", {}, "INVALID_ARGUMENT"),
        ("read_file", {"path": "g"}, "INVALID_ARGUMENT"),
        ("", {"calls": 0}, "INVALID_ARGUMENT"),
        ("read_file", {"path": "o"}, "IDEMPOTENCY_KEY_REUSED"),
        ("read_file", {}, "INVALID_ARGUMENT"),
    ]


def _read(path: str) -> pb.ToolCall:
    return pb.ToolCall(tool="read_file", read_file=pb.ReadFileArgs(path=path))


def _run(*argv: str) -> pb.ToolCall:
    return pb.ToolCall(tool="execute_command", execute_command=pb.ExecuteCommandArgs(argv=argv))


DENIED = [
    ("path outside the root", _read("../x"), "args.path"),
    ("absolute path elsewhere", _read("/etc/passwd"), "args.path"),
    ("denied pattern", _read("a/.ssh/id"), "args.path"),
    (
        "delete outside the root",
        pb.ToolCall(tool="delete_file", delete_file=pb.DeleteFileArgs(path="../x")),
        "args.path",
    ),
    ("executable not allowed", _run("curl"), "args.argv[0]"),
    ("argument not allowed", _run("find", ".", "-exec", "id", ";"), "args.argv[2]"),
]


@pytest.mark.parametrize(("case", "call", "field"), DENIED, ids=[c[0] for c in DENIED])
async def test_a_policy_denial_names_the_field(
    stub: ts_grpc.TaskServiceAsyncStub, case: str, call: pb.ToolCall, field: str
) -> None:
    """PERMISSION_DENIED carries a BadRequest naming the argument it refuses, alone and as
    calls[i] in a batch."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Submit(ts.SubmitRequest(call=call))
    denied = rich(caught.value)
    assert (denied.code, denied.reason, denied.fields) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "POLICY_DENIED",
        [f"call.{field}"],
    ), case
    good = pb.ToolCall(tool="read_file", read_file=pb.ReadFileArgs(path="a"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SubmitBatch(ts.SubmitBatchRequest(calls=[good, call]))
    assert rich(caught.value).fields == [f"calls[1].{field}"]
    assert await _count(stub) == 0
