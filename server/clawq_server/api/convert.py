"""Pure conversions between protobuf messages and domain types."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.duration_pb2 import Duration
from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from google.protobuf.message import Message
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from clawq.v1 import task_pb2 as pb
from clawq_server.errors import InvalidArgument
from clawq_server.model import (
    NO_DELAY,
    Call,
    JsonObject,
    SideEffect,
    Task,
    TaskError,
    TaskState,
    ToolResult,
)

BUILTIN_ARGS: dict[str, type[Message]] = {
    "read_file": pb.ReadFileArgs,
    "write_file": pb.WriteFileArgs,
    "list_directory": pb.ListDirectoryArgs,
    "delete_file": pb.DeleteFileArgs,
    "execute_command": pb.ExecuteCommandArgs,
    "execute_python": pb.ExecutePythonArgs,
}
_BYTES_FIELDS = {
    name: frozenset(f.name for f in cls.DESCRIPTOR.fields if f.type == FieldDescriptor.TYPE_BYTES)
    for name, cls in BUILTIN_ARGS.items()
}
STATE_TO_PB = {state: pb.TaskState.Value(f"TASK_STATE_{state.value}") for state in TaskState}
STATE_FROM_PB = {v: k for k, v in STATE_TO_PB.items()}
# list_directory's payload goes out as a typed DirectoryListing: its fields, exactly.
LISTING_TOOL = "list_directory"
_LISTING_KEYS = frozenset(pb.DirectoryListing.DESCRIPTOR.fields_by_name)
_ENTRY_KEYS = frozenset(pb.DirectoryEntry.DESCRIPTOR.fields_by_name)
SIDE_EFFECT_TO_PB = {
    SideEffect.READ_ONLY: pb.SIDE_EFFECT_READ_ONLY,
    SideEffect.WRITE: pb.SIDE_EFFECT_WRITE,
}


def _field_value(fd: FieldDescriptor, value: Any) -> Any:
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        return dict(value)
    if fd.is_repeated:
        return list(value)
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    if fd.enum_type is not None:
        known = fd.enum_type.values_by_number.get(value)
        if known is None:
            raise InvalidArgument.field(fd.name, f"{value} is not a value of {fd.enum_type.name}")
        return known.name
    return value


def _is_plain(fd: Any) -> bool:
    return not (fd.is_repeated or fd.type == FieldDescriptor.TYPE_BYTES or fd.enum_type)


# Messages whose every field is a plain scalar convert without per-field dispatch.
_PLAIN = frozenset(
    cls for cls in BUILTIN_ARGS.values() if all(_is_plain(fd) for fd in cls.DESCRIPTOR.fields)
)
# Longer than any tool name a registry accepts; bounds what an error message echoes.
MAX_TOOL_NAME = 128


def typed_args_to_dict(message: Message) -> dict[str, Any]:
    """The set fields of a typed argument message as a JSON-able dict (bytes as base64)."""
    if type(message) in _PLAIN:
        # A loop, not a comprehension: on Python 3.11 a comprehension is a function call.
        plain: dict[str, Any] = {}
        for fd, value in message.ListFields():
            plain[fd.name] = value
        return plain
    return {fd.name: _field_value(fd, v) for fd, v in message.ListFields()}


def struct_to_dict(struct: Struct, field: str = "arguments") -> dict[str, Any]:
    """A Struct as a plain dict; InvalidArgument naming field when it holds a NaN or an
    infinity."""
    try:
        return json_format.MessageToDict(struct)
    except ValueError:
        raise InvalidArgument.field(field, "must hold only finite numbers") from None


def call_from_proto(message: pb.ToolCall) -> Call:
    """The domain Call of a ToolCall; raises InvalidArgument naming the bad field."""
    tool = message.tool
    if not tool:
        raise InvalidArgument.field("tool", "is required")
    if len(tool) > MAX_TOOL_NAME:
        raise InvalidArgument.field(
            "tool", f"must be at most {MAX_TOOL_NAME} characters", reason="TOOL_NOT_FOUND"
        )
    which = message.WhichOneof("args")
    if which is None:
        args: dict[str, Any] = {}
    elif which == "arguments":
        args = struct_to_dict(message.arguments)
    elif which != tool:
        raise InvalidArgument.field(which, f"typed arguments of {which} given for tool {tool}")
    else:
        try:
            args = typed_args_to_dict(getattr(message, which))
        except InvalidArgument as error:
            raise error.prefixed(f"{which}.") from None
    delay = _delay(message) if message.HasField("delay") else NO_DELAY
    # Positional: batches convert thousands of calls, and keywords cost a third more.
    return Call(
        tool,
        args,
        message.idempotency_key,
        message.priority,
        delay,
        message.max_attempts,
        message.idempotent,
    )


def _delay(message: pb.ToolCall) -> timedelta:
    try:
        return message.delay.ToTimedelta()
    except (OverflowError, ValueError):
        raise InvalidArgument.field("delay", "is out of range") from None


def _builtin_args(tool: str, args: Mapping[str, Any]) -> dict[str, Any]:
    if not _BYTES_FIELDS[tool] & args.keys():
        return dict(args)
    fields = dict(args)
    for name in _BYTES_FIELDS[tool] & fields.keys():
        fields[name] = base64.b64decode(fields[name])
    return fields


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _timestamp(value: datetime | None) -> dict[str, int] | None:
    # Exact and several times cheaper than Timestamp.FromDatetime, which goes through
    # a time tuple; tasks are converted by the thousand in BatchGetTasks and ListTasks.
    if value is None:
        return None
    delta = value - EPOCH
    return {"seconds": delta.days * 86_400 + delta.seconds, "nanos": delta.microseconds * 1000}


def result_to_proto(result: ToolResult, tool: str) -> pb.TaskResult:
    """The wire form of a ToolResult of tool: a listing's entries typed, other payloads a Struct."""
    common: dict[str, Any] = {
        "output": result.output,
        "truncated": result.truncated,
        "stderr": result.stderr,
        "stderr_truncated": result.stderr_truncated,
        "exit_code": result.exit_code,
        "signal": result.signal,
        "cached": result.cached,
    }
    payload = result.payload
    if tool == LISTING_TOOL and _is_listing(payload):
        typed: dict[str, Any] = {**common, "listing": payload}
        try:
            return pb.TaskResult(**typed)
        except ValueError:
            pass  # a size beyond int64: sent as a Struct
    message = pb.TaskResult(**common)
    if payload is not None:
        message.payload.update(payload)
    return message


def _is_listing(payload: JsonObject | None) -> bool:
    """True for exactly the built-in tool's shape; upb would quietly fill in or coerce any
    other (a remote worker's, say), which then goes out as the Struct it is."""
    if payload is None or payload.keys() != _LISTING_KEYS:
        return False
    entries, truncated = payload["entries"], payload["truncated"]
    return (
        type(truncated) is bool
        and type(entries) is list
        and all(
            type(e) is dict
            and e.keys() == _ENTRY_KEYS
            and type(e["path"]) is str
            and type(e["type"]) is str
            and type(e["size"]) is int
            for e in entries
        )
    )


def result_from_proto(message: pb.TaskResult) -> ToolResult:
    """The domain ToolResult of a TaskResult (from a remote worker)."""
    return ToolResult(
        output=message.output,
        truncated=message.truncated,
        stderr=message.stderr,
        stderr_truncated=message.stderr_truncated,
        exit_code=message.exit_code if message.HasField("exit_code") else None,
        signal=message.signal,
        payload=_payload_from_proto(message),
    )


def _payload_from_proto(message: pb.TaskResult) -> dict[str, Any] | None:
    if message.HasField("listing"):
        listing = message.listing
        entries = [{"path": e.path, "type": e.type, "size": e.size} for e in listing.entries]
        return {"entries": entries, "truncated": listing.truncated}
    return struct_to_dict(message.payload, "payload") if message.HasField("payload") else None


def error_from_proto(message: pb.TaskError) -> TaskError:
    """The domain TaskError of a wire TaskError."""
    return TaskError(code=message.code, reason=message.reason, message=message.message)


def task_to_proto(task: Task, *, with_result: bool = True) -> pb.Task:
    """The wire form of a Task (without its result when the caller splices it in)."""
    return _completed(pb.Task(**_task_fields(task)), task, with_result)


def add_tasks(container: RepeatedCompositeFieldContainer[pb.Task], tasks: Iterable[Task]) -> None:
    """Append the wire form of each task to a repeated Task field of a response."""
    # Built in place: constructing each Task and then copying it into the response
    # costs two-thirds more.
    add = container.add
    for task in tasks:
        _completed(add(**_task_fields(task)), task, with_result=True)


def _task_fields(task: Task) -> dict[str, Any]:
    # Nested messages are given as mappings: upb builds them in one constructor call,
    # about a third cheaper than building each message and copying it in.
    call: dict[str, Any] = {
        "tool": task.tool,
        "idempotency_key": task.idempotency_key,
        "priority": task.priority,
        "max_attempts": task.max_attempts,
        "idempotent": task.idempotent,
    }
    tool, args = task.tool, task.args
    if tool in BUILTIN_ARGS:
        # upb only reads the mapping: a plain dict without bytes fields goes in uncopied.
        plain = type(args) is dict and not _BYTES_FIELDS[tool]
        call[tool] = args if plain else _builtin_args(tool, args)
    created = _timestamp(task.created)
    fields: dict[str, Any] = {
        "id": task.id,
        "call": call,
        "state": STATE_TO_PB[task.state],
        "attempt": task.attempt,
        "max_attempts": task.max_attempts,
        "priority": task.priority,
        # An undelayed task's not_before is its created moment, often the same object.
        "not_before": created if task.not_before is task.created else _timestamp(task.not_before),
        "create_time": created,
        "start_time": _timestamp(task.started),
        "finish_time": _timestamp(task.finished),
        "idempotency_key": task.idempotency_key,
    }
    if task.error is not None:
        error = task.error
        fields["error"] = {"code": error.code, "reason": error.reason, "message": error.message}
    return fields


def _completed(message: pb.Task, task: Task, with_result: bool) -> pb.Task:
    # The parts a mapping cannot give: Struct arguments and the result.
    if task.tool not in BUILTIN_ARGS:
        message.call.arguments.update(task.args)
    if with_result and task.result is not None:
        message.result.CopyFrom(result_to_proto(task.result, task.tool))
    return message


def seconds_or_none(message: Message, field: str) -> float | None:
    """A Duration field in seconds, or None when unset; read without a timedelta, so no
    value can overflow."""
    if not message.HasField(field):
        return None
    value: Duration = getattr(message, field)
    return value.seconds + value.nanos / 1e9


def timestamp_or_none(message: Message, field: str) -> datetime | None:
    """The aware datetime of a Timestamp field, or None when unset."""
    if not message.HasField(field):
        return None
    value: Timestamp = getattr(message, field)
    try:
        return value.ToDatetime(tzinfo=UTC)
    except (OverflowError, ValueError):
        raise InvalidArgument.field(field, "is out of range") from None
