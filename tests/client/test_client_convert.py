"""Conversions between the client's types and the clawq.v1 wire messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import clawq
from clawq._convert import (
    args_from_proto,
    call_to_proto,
    result_from_proto,
    state_to_proto,
    task_from_proto,
)
from clawq.v1 import task_pb2

BUILTIN_CASES: list[tuple[str, dict[str, Any]]] = [
    ("read_file", {"path": "notes.txt", "offset": 4, "limit": 10}),
    ("write_file", {"path": "a.txt", "text": "hi", "mode": "append", "make_parents": True}),
    ("write_file", {"path": "b.bin", "data": b"\x00\xff"}),
    ("list_directory", {"path": "src", "recursive": True, "max_depth": 2, "max_entries": 50}),
    ("delete_file", {"path": "old", "recursive": True}),
    (
        "execute_command",
        {"argv": ["ls", "-l"], "cwd": "w", "env": {"LANG": "C"}, "stdin": "x", "timeout_s": 2.5},
    ),
    ("execute_python", {"code": "print(1)", "timeout_s": 1, "max_output_bytes": 100}),
]


@pytest.mark.parametrize(("tool", "args"), BUILTIN_CASES)
def test_builtin_calls_use_their_typed_message(tool: str, args: dict[str, Any]) -> None:
    """A built-in tool's arguments travel in its typed oneof field and come back unchanged."""
    msg = call_to_proto(clawq.Call(tool, **args))
    assert msg.tool == tool
    assert msg.WhichOneof("args") == tool
    assert args_from_proto(msg) == args


def test_builtin_call_without_arguments_still_selects_its_message() -> None:
    """A call with every argument defaulted still marks its typed message as present."""
    msg = call_to_proto(clawq.Call("list_directory"))
    assert msg.WhichOneof("args") == "list_directory"


@pytest.mark.parametrize(
    ("content", "field"), [("text content", "text"), (b"raw", "data"), (bytearray(b"r"), "data")]
)
def test_write_file_content_alias(content: str | bytes, field: str) -> None:
    """content= is text for str and data for bytes."""
    msg = call_to_proto(clawq.Call("write_file", path="f", content=content))
    assert msg.write_file.WhichOneof("content") == field
    assert getattr(msg.write_file, field) == content


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("create", task_pb2.WRITE_MODE_CREATE),
        ("Overwrite", task_pb2.WRITE_MODE_OVERWRITE),
        ("WRITE_MODE_APPEND", task_pb2.WRITE_MODE_APPEND),
        (task_pb2.WRITE_MODE_CREATE, task_pb2.WRITE_MODE_CREATE),
    ],
)
def test_write_mode_accepts_short_and_full_names(mode: object, expected: int) -> None:
    """The mode enum takes "create", the full value name, or the number."""
    msg = call_to_proto(clawq.Call("write_file", path="f", text="", mode=mode))
    assert msg.write_file.mode == expected


@pytest.mark.parametrize(
    ("tool", "args", "field"),
    [
        ("read_file", {"paht": "x"}, "paht"),
        ("read_file", {"path": 12}, "path"),
        ("read_file", {"path": "x", "limit": "10"}, "limit"),
        ("read_file", {"path": "x", "limit": True}, "limit"),
        ("list_directory", {"recursive": 1}, "recursive"),
        ("execute_command", {"argv": "ls -l"}, "argv"),
        ("execute_command", {"argv": ["ls"], "env": {"A": 1}}, "env"),
        ("write_file", {"path": "x", "text": "t", "mode": "truncate"}, "mode"),
        ("read_file", {"path": "x", "limit": 2**70}, "limit"),
    ],
)
def test_misfit_arguments_go_as_struct_for_the_server_to_judge(
    tool: str, args: dict[str, Any], field: str
) -> None:
    """An argument the typed message cannot carry is sent in a Struct, never dropped."""
    msg = call_to_proto(clawq.Call(tool, **args))
    assert msg.WhichOneof("args") == "arguments"
    assert field in msg.arguments.fields
    assert set(msg.arguments.fields) == set(args)


def test_struct_fallback_encodes_bytes_and_enums_as_the_server_reads_them() -> None:
    """In the Struct fallback, bytes go as base64 and enum values by their full names."""
    msg = call_to_proto(
        clawq.Call("write_file", path="x", data=b"\x00\x01", mode="append", mkdirs=True)
    )
    fields = args_from_proto(msg)
    assert fields == {"path": "x", "data": "AAE=", "mode": "WRITE_MODE_APPEND", "mkdirs": True}


def test_plugin_tool_arguments_go_as_struct() -> None:
    """A plugin tool's arguments are a Struct; whole numbers come back as int."""
    args = {"n": 3, "ratio": 0.5, "names": ["a", "b"], "opts": {"deep": None, "on": True}}
    msg = call_to_proto(clawq.Call.of("word_count", args))
    assert msg.WhichOneof("args") == "arguments"
    assert args_from_proto(msg) == args
    assert isinstance(args_from_proto(msg)["n"], int)


def test_plugin_bytes_argument_is_refused_locally_naming_the_field() -> None:
    """A value JSON cannot carry raises InvalidArgument before anything is sent."""
    with pytest.raises(clawq.InvalidArgument) as info:
        call_to_proto(clawq.Call("word_count", blob=b"\x00"))
    assert info.value.field_violations[0][0] == "blob"


def test_call_options_are_carried() -> None:
    """Idempotency key, priority, delay, attempts and the idempotent flag reach the wire."""
    msg = call_to_proto(
        clawq.Call(
            "read_file",
            path="a",
            idempotency_key="k-1",
            priority=5,
            delay=1.5,
            max_attempts=3,
            idempotent=True,
        )
    )
    assert (msg.idempotency_key, msg.priority, msg.max_attempts, msg.idempotent) == (
        "k-1",
        5,
        3,
        True,
    )
    assert msg.delay.ToTimedelta() == timedelta(seconds=1.5)
    assert clawq.Call("x", delay=timedelta(minutes=1)).delay == timedelta(minutes=1)
    assert not call_to_proto(clawq.Call("read_file", path="a")).HasField("delay")


def test_call_of_takes_arguments_named_like_options() -> None:
    """Call.of keeps a tool argument called "priority" apart from the priority option."""
    call = clawq.Call.of("plugin", {"priority": "high"}, priority=2)
    assert call.args == {"priority": "high"}
    assert call.priority == 2


def test_wrong_option_type_raises_invalid_argument() -> None:
    """A call option of the wrong type is an InvalidArgument, not a protobuf TypeError."""
    with pytest.raises(clawq.InvalidArgument):
        call_to_proto(clawq.Call("read_file", path="a", priority="high"))  # type: ignore[arg-type]


def _task_proto(**fields: Any) -> task_pb2.Task:
    task = task_pb2.Task(
        id="t1",
        call=task_pb2.ToolCall(tool="read_file", read_file=task_pb2.ReadFileArgs(path="a")),
        **fields,
    )
    task.create_time.FromDatetime(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    return task


def test_task_from_proto_succeeded() -> None:
    """A succeeded task carries its result, aware timestamps and a done flag."""
    proto = _task_proto(
        state=task_pb2.TASK_STATE_SUCCEEDED,
        attempt=1,
        max_attempts=3,
        priority=2,
        idempotency_key="k",
        result=task_pb2.TaskResult(output=b"hi \xff", truncated=True, exit_code=0, cached=True),
    )
    proto.finish_time.FromDatetime(datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC))
    task = task_from_proto(proto)
    assert (task.id, task.tool, task.args, task.state) == (
        "t1",
        "read_file",
        {"path": "a"},
        "SUCCEEDED",
    )
    assert (task.attempt, task.max_attempts, task.priority, task.idempotency_key) == (1, 3, 2, "k")
    assert task.done
    assert task.created == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert task.finished is not None
    assert task.finished.tzinfo is not None
    assert task.started is None
    assert task.error is None
    assert task.result is not None
    assert task.result.output == "hi \ufffd"
    assert task.result.data == b"hi \xff"
    assert (task.result.truncated, task.result.exit_code, task.result.cached) == (True, 0, True)
    assert task.result.task_id == "t1"


def test_task_from_proto_failed_and_queued() -> None:
    """A failed task carries its error; a queued one is not done and has no result."""
    failed = task_from_proto(
        _task_proto(
            state=task_pb2.TASK_STATE_FAILED,
            error=task_pb2.TaskError(code="NOT_FOUND", reason="FILE_NOT_FOUND", message="no a"),
        )
    )
    assert failed.error == clawq.TaskError("NOT_FOUND", "FILE_NOT_FOUND", "no a")
    assert failed.result is None
    queued = task_from_proto(_task_proto(state=task_pb2.TASK_STATE_QUEUED))
    assert (queued.state, queued.done, queued.result) == ("QUEUED", False, None)
    process = task_from_proto(_task_proto(result=task_pb2.TaskResult(output=b"x")))
    assert process.result is not None
    assert process.result.exit_code is None


@pytest.mark.parametrize("name", ["queued", "QUEUED", "TASK_STATE_QUEUED"])
def test_state_names(name: str) -> None:
    """A state filter accepts any case and the full enum name."""
    assert state_to_proto(name) == task_pb2.TASK_STATE_QUEUED


def test_unknown_state_is_invalid_argument() -> None:
    """An unknown state filter is refused locally."""
    with pytest.raises(clawq.InvalidArgument):
        state_to_proto("sleeping")


_text = st.text(max_size=20)
_int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**50), 2**50) | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)


@given(
    path=_text,
    offset=_int64,
    limit=_int64,
    argv=st.lists(_text, max_size=4),
    env=st.dictionaries(_text, _text, max_size=3),
)
def test_typed_arguments_round_trip(
    path: str, offset: int, limit: int, argv: list[str], env: dict[str, str]
) -> None:
    """Typed arguments survive Call -> ToolCall -> args (defaults are simply absent)."""
    for tool, args in (
        ("read_file", {"path": path, "offset": offset, "limit": limit}),
        ("execute_command", {"argv": argv, "env": env, "cwd": path}),
    ):
        msg = task_pb2.ToolCall.FromString(
            call_to_proto(clawq.Call(tool, **args)).SerializeToString()
        )
        assert msg.WhichOneof("args") == tool
        assert args_from_proto(msg) == {k: v for k, v in args.items() if v}


@given(args=st.dictionaries(_text, _json, max_size=5))
def test_plugin_arguments_round_trip(args: dict[str, Any]) -> None:
    """JSON arguments of a plugin tool survive the Struct unchanged."""
    msg = task_pb2.ToolCall.FromString(
        call_to_proto(clawq.Call.of("plugin", args)).SerializeToString()
    )
    assert args_from_proto(msg) == args


def test_a_typed_listing_reads_as_the_payload_a_struct_gave() -> None:
    """Entries (sizes as int) and the truncated flag; an empty listing still has its keys."""
    listing = task_pb2.DirectoryListing(
        entries=[task_pb2.DirectoryEntry(path="d/f", type="file", size=2**40)], truncated=True
    )
    result = result_from_proto("t1", task_pb2.TaskResult(listing=listing))
    assert result.payload == {
        "entries": [{"path": "d/f", "type": "file", "size": 2**40}],
        "truncated": True,
    }
    empty = result_from_proto("t1", task_pb2.TaskResult(listing=task_pb2.DirectoryListing()))
    assert empty.payload == {"entries": [], "truncated": False}
