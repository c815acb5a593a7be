"""Protocol abuse: oversized, malformed and hostile messages get a clean error, never a crash."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

import clawq
from clawq.v1 import task_pb2 as pb
from clawq.v1 import task_service_pb2 as ts
from tests.conftest import Served

SUBMIT = "/clawq.v1.TaskService/Submit"


@pytest.fixture
async def channel(served: Served) -> AsyncIterator[grpc.aio.Channel]:
    """A channel allowed to send far more than the server accepts."""
    options = [("grpc.max_send_message_length", 200 << 20)]
    async with grpc.aio.insecure_channel(served.target, options=options) as chan:
        yield chan


async def _raw(channel: grpc.aio.Channel, payload: bytes) -> ts.SubmitResponse:
    call = channel.unary_unary(
        SUBMIT, request_serializer=lambda b: b, response_deserializer=ts.SubmitResponse.FromString
    )
    return await call(payload, timeout=10)


async def _still_serving(channel: grpc.aio.Channel) -> None:
    good = ts.SubmitRequest(call=pb.ToolCall(tool="read_file", read_file=pb.ReadFileArgs(path="a")))
    assert (await _raw(channel, good.SerializeToString())).task_id


async def test_oversized_message_is_refused(channel: grpc.aio.Channel) -> None:
    """A 70 MiB request exceeds the 64 MiB limit: RESOURCE_EXHAUSTED, server unharmed."""
    huge = ts.SubmitRequest(
        call=pb.ToolCall(
            tool="write_file", write_file=pb.WriteFileArgs(path="x", data=b"\0" * (70 << 20))
        )
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _raw(channel, huge.SerializeToString())
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    await _still_serving(channel)


async def test_unknown_fields_are_ignored(channel: grpc.aio.Channel) -> None:
    """Fields from a newer client are skipped, as protobuf intends; the call still works."""
    good = ts.SubmitRequest(call=pb.ToolCall(tool="read_file", read_file=pb.ReadFileArgs(path="a")))
    unknown = bytes([0xA0, 0x1F, 0x01])  # field 500, varint 1
    assert (await _raw(channel, good.SerializeToString() + unknown)).task_id


@pytest.mark.parametrize(
    "payload",
    [
        b"\x0a\x05\x0a\x03\xff\xfe\xfd",  # call.tool = invalid UTF-8
        b"\x0a\xff\xff\xff\xff\x0f",  # a length past the end of the message
        b"\xff" * 64,  # not protobuf at all
    ],
    ids=["invalid-utf8", "truncated", "garbage"],
)
async def test_malformed_bytes_are_refused(channel: grpc.aio.Channel, payload: bytes) -> None:
    """Bytes that do not parse end the call with an error status, and the server goes on."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _raw(channel, payload)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Traceback" not in (caught.value.details() or "")
    await _still_serving(channel)


async def test_deeply_nested_struct_is_refused(channel: grpc.aio.Channel) -> None:
    """A Struct nested thousands deep hits the parser's recursion limit, not the stack."""
    inner = b""
    for _ in range(5000):
        value = b"\x2a" + _varint(len(inner)) + inner  # Value.struct_value
        entry = b"\x0a\x01k" + b"\x12" + _varint(len(value)) + value  # fields{"k": value}
        inner = b"\x0a" + _varint(len(entry)) + entry
    call = b"\x0a\x03abc" + b"\xa2\x01" + _varint(len(inner)) + inner  # tool, arguments (20)
    payload = b"\x0a" + _varint(len(call)) + call
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _raw(channel, payload)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    await _still_serving(channel)


async def test_deep_struct_within_limits_is_a_clean_argument_error(served: Served) -> None:
    """A Struct that parses but is not the tool's schema is INVALID_ARGUMENT naming args."""
    nested: dict[str, object] = {"leaf": 1}
    for _ in range(20):
        nested = {"n": nested}
    async with clawq.AsyncClient(served.target) as client:
        with pytest.raises(clawq.InvalidArgument) as caught:
            await client.submit("read_file", path="a", extra=nested)
    assert caught.value.reason == "TOOL_ARGUMENTS_INVALID"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


async def test_malformed_batch_in_a_stream_ends_it_cleanly(channel: grpc.aio.Channel) -> None:
    """A stream whose second message does not parse ends with INVALID_ARGUMENT after one ack."""
    good = ts.SubmitStreamRequest(
        batch_id="b1", calls=[pb.ToolCall(tool="read_file", read_file=pb.ReadFileArgs(path="a"))]
    ).SerializeToString()
    stream = channel.stream_stream(
        "/clawq.v1.TaskService/SubmitStream",
        request_serializer=lambda b: b,
        response_deserializer=ts.SubmitStreamResponse.FromString,
    )

    async def batches() -> AsyncIterator[bytes]:
        yield good
        yield b"\xff" * 32

    acks: list[ts.SubmitStreamResponse] = []

    async def consume() -> None:
        async for ack in stream(batches(), timeout=10):
            acks.append(ack)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await consume()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(acks) <= 1
