"""Server-side protobuf conversions are exact and lose nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from clawq.v1 import task_pb2 as pb
from clawq_server.api import convert
from clawq_server.model import Call

moments = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


@given(moments)
def test_timestamps_match_protobufs_own_conversion(moment: datetime) -> None:
    """The fast Timestamp conversion equals Timestamp.FromDatetime to the microsecond."""
    expected = Timestamp()
    expected.FromDatetime(moment)
    assert convert._timestamp(moment) == expected


@given(
    path=st.text(min_size=1, max_size=40).filter(lambda s: "\x00" not in s),
    offset=st.integers(min_value=0, max_value=2**40),
    priority=st.integers(min_value=-10, max_value=10),
    delay=st.integers(min_value=0, max_value=10**6),
)
def test_tool_calls_round_trip_through_the_domain(
    path: str, offset: int, priority: int, delay: int
) -> None:
    """ToolCall → Call keeps the typed arguments and options."""
    message = pb.ToolCall(
        tool="read_file",
        read_file=pb.ReadFileArgs(path=path, offset=offset),
        priority=priority,
        idempotency_key="k",
    )
    message.delay.FromTimedelta(timedelta(milliseconds=delay))
    call = convert.call_from_proto(message)
    expected_args = {"path": path, **({"offset": offset} if offset else {})}
    assert call == Call(
        "read_file", expected_args, "k", priority, timedelta(milliseconds=delay), 0, False
    )


def test_write_data_survives_the_json_arguments() -> None:
    """Bytes arguments travel as base64 in the stored JSON and come back as bytes."""
    message = pb.ToolCall(tool="write_file", write_file=pb.WriteFileArgs(path="a", data=b"\0\xff"))
    call = convert.call_from_proto(message)
    assert call.args["data"] == "AP8="
    back = pb.ToolCall(tool="write_file")
    convert._args_to_proto(back, "write_file", call.args)
    assert back.write_file.data == b"\0\xff"
