"""Server-side protobuf conversions are exact and lose nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from clawq.v1 import task_pb2 as pb
from clawq.v1 import task_service_pb2 as ts
from clawq_server.api import convert
from clawq_server.model import Call, SideEffect, Task, TaskError, TaskState, ToolResult

moments = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


@given(moments)
def test_timestamps_match_protobufs_own_conversion(moment: datetime) -> None:
    """The fast Timestamp conversion equals Timestamp.FromDatetime to the microsecond."""
    expected = Timestamp()
    expected.FromDatetime(moment)
    assert Timestamp(**(convert._timestamp(moment) or {})) == expected


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
    back = pb.WriteFileArgs(**convert._builtin_args("write_file", call.args))
    assert back.data == b"\0\xff"


def test_tasks_added_in_place_equal_tasks_built_alone() -> None:
    """add_tasks gives the same messages as task_to_proto: typed and Struct arguments,
    results, errors and every time field."""
    now = datetime(2026, 1, 2, 3, 4, 5, 678_901, tzinfo=UTC)
    base = Task(
        id="t1",
        principal="me",
        tool="read_file",
        args={"path": "a.txt", "offset": 3},
        state=TaskState.QUEUED,
        side_effect=SideEffect.READ_ONLY,
        attempt=0,
        max_attempts=3,
        priority=2,
        idempotency_key="k",
        idempotent=True,
        created=now,
        not_before=now + timedelta(seconds=1),
    )
    done = base._replace(
        id="t2",
        tool="plugin.echo",
        args={"nested": {"list": [1, "two", None]}},
        state=TaskState.SUCCEEDED,
        started=now + timedelta(seconds=2),
        finished=now + timedelta(seconds=3),
        result=ToolResult(output=b"out", exit_code=0, payload={"rows": 2}),
    )
    failed = base._replace(
        id="t3", state=TaskState.FAILED, error=TaskError("NOT_FOUND", "PATH_NOT_FOUND", "gone")
    )
    listing = ts.ListTasksResponse()
    convert.add_tasks(listing.tasks, [base, done, failed])
    assert list(listing.tasks) == [convert.task_to_proto(t) for t in (base, done, failed)]
    assert convert.struct_to_dict(listing.tasks[1].call.arguments) == done.args
    assert listing.tasks[1].result.payload["rows"] == 2
    assert listing.tasks[2].error.reason == "PATH_NOT_FOUND"
    assert listing.tasks[0].call.read_file.offset == 3
    assert listing.tasks[1].finish_time.ToDatetime(tzinfo=UTC) == now + timedelta(seconds=3)


def test_times_and_arguments_are_each_tasks_own() -> None:
    """A delayed task keeps its own not_before; an undelayed one shares created's moment;
    arguments with bytes fields are decoded, plain ones sent as they are."""
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    undelayed = Task(
        "t1", "me", "read_file", {"path": "a"}, TaskState.QUEUED, SideEffect.READ_ONLY,
        0, 3, 0, "", False, now, now,
    )  # fmt: skip
    delayed = undelayed._replace(id="t2", not_before=now + timedelta(seconds=5))
    written = undelayed._replace(id="t3", tool="write_file", args={"path": "b", "data": "aGk="})
    listing = ts.ListTasksResponse()
    convert.add_tasks(listing.tasks, [undelayed, delayed, written])
    first, second, third = listing.tasks
    assert first.not_before == first.create_time
    assert second.not_before.ToDatetime(tzinfo=UTC) == now + timedelta(seconds=5)
    assert second.create_time.ToDatetime(tzinfo=UTC) == now
    assert (first.call.read_file.path, third.call.write_file.data) == ("a", b"hi")


entry_lists = st.lists(
    st.fixed_dictionaries(
        {
            "path": st.text(max_size=30),
            "type": st.sampled_from(["file", "dir", "symlink", "other"]),
            "size": st.integers(min_value=0, max_value=2**62),
        }
    ),
    max_size=20,
)


@given(entries=entry_lists, truncated=st.booleans())
def test_listings_go_typed_and_come_back_the_same(
    entries: list[dict[str, object]], truncated: bool
) -> None:
    """list_directory's entries travel as a DirectoryListing (no Struct), empty ones too."""
    result = ToolResult(output=b"x\n", payload={"entries": entries, "truncated": truncated})
    message = convert.result_to_proto(result, "list_directory")
    assert message.HasField("listing")
    assert not message.HasField("payload")
    assert [e.size for e in message.listing.entries] == [e["size"] for e in entries]
    assert convert.result_from_proto(message) == result


def test_other_shapes_and_other_tools_keep_the_struct() -> None:
    """Only the built-in listing's exact shape is typed; anything else is sent as it is."""
    entry: dict[str, Any] = {"path": "a", "type": "file", "size": 1}
    odd: list[dict[str, Any]] = [
        {"entries": [{**entry, "owner": "x"}], "truncated": False},
        {"entries": [{"path": "a", "type": "file"}], "truncated": False},
        {"entries": [{**entry, "size": 1.5}], "truncated": False},
        {"entries": [{**entry, "size": 1.0}], "truncated": False},
        {"entries": [{**entry, "size": True}], "truncated": False},
        {"entries": [{**entry, "size": None}], "truncated": False},
        {"entries": [{**entry, "type": None}], "truncated": False},
        {"entries": [{**entry, "size": 2**63}], "truncated": False},
        {"entries": [{}], "truncated": False},
        {"entries": [1, 2], "truncated": False},
        {"entries": [entry], "truncated": None},
        {"entries": [entry], "truncated": 1},
        {"entries": [], "truncated": False, "more": True},
    ]
    for payload in odd:
        message = convert.result_to_proto(ToolResult(payload=payload), "list_directory")
        assert not message.HasField("listing")
        assert convert.struct_to_dict(message.payload) == payload
    listing_like = {"entries": [], "truncated": False}
    message = convert.result_to_proto(ToolResult(payload=listing_like), "my_plugin")
    assert not message.HasField("listing")
    assert convert.struct_to_dict(message.payload) == listing_like
