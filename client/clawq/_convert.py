"""Pure conversions from the wire messages (clawq.v1) to the client's types, and back for calls."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from clawq._call import BUILTIN_ARGS, call_to_proto, enum_prefix, enum_type
from clawq.errors import InvalidArgument
from clawq.types import CacheStats, QueueStats, Result, Task, TaskError, ToolCacheStats, ToolInfo
from clawq.v1 import admin_service_pb2, task_pb2

__all__ = [
    "BUILTIN_ARGS",
    "args_from_proto",
    "cache_stats_from_proto",
    "call_to_proto",
    "queue_stats_from_proto",
    "result_from_proto",
    "state_to_proto",
    "struct_to_dict",
    "task_from_proto",
    "tool_from_proto",
]

_F = FieldDescriptor


def args_from_proto(call: task_pb2.ToolCall) -> dict[str, Any]:
    """The arguments of a wire call as Python values (only the fields that are set)."""
    kind = call.WhichOneof("args")
    if kind is None:
        return {}
    if kind == "arguments":
        return struct_to_dict(call.arguments)
    out: dict[str, Any] = {}
    for field, value in getattr(call, kind).ListFields():
        if field.message_type is not None:
            out[field.name] = dict(value)
        elif field.is_repeated:
            out[field.name] = list(value)
        elif field.type == _F.TYPE_ENUM:
            enum = enum_type(field)
            name = enum.values_by_number[value].name
            out[field.name] = name.removeprefix(enum_prefix(enum.name)).lower()
        else:
            out[field.name] = value
    return out


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as a dict; whole numbers come back as int (JSON has one number type)."""
    converted = _whole_numbers(json_format.MessageToDict(struct))
    assert isinstance(converted, dict)  # noqa: S101 - a Struct always converts to a dict
    return converted


def _whole_numbers(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    return value


def _time(msg: Message, name: str) -> datetime | None:
    if not msg.HasField(name):
        return None
    stamp = getattr(msg, name)
    assert isinstance(stamp, timestamp_pb2.Timestamp)  # noqa: S101 - narrows for mypy
    return stamp.ToDatetime(tzinfo=UTC)


def result_from_proto(task_id: str, r: task_pb2.TaskResult) -> Result:
    """A Result from the wire."""
    return Result(
        task_id=task_id,
        data=r.output,
        stderr_data=r.stderr,
        truncated=r.truncated,
        stderr_truncated=r.stderr_truncated,
        exit_code=r.exit_code if r.HasField("exit_code") else None,
        signal=r.signal,
        payload=_payload(r),
        cached=r.cached,
    )


def _payload(r: task_pb2.TaskResult) -> dict[str, Any]:
    """The structured result; a typed directory listing as the same dict a Struct gives."""
    if r.HasField("listing"):
        entries = [{"path": e.path, "type": e.type, "size": e.size} for e in r.listing.entries]
        return {"entries": entries, "truncated": r.listing.truncated}
    return struct_to_dict(r.payload)


def task_from_proto(t: task_pb2.Task) -> Task:
    """A Task from the wire."""
    error = t.error if t.HasField("error") else None
    return Task(
        id=t.id,
        tool=t.call.tool,
        args=args_from_proto(t.call),
        state=task_pb2.TaskState.Name(t.state).removeprefix("TASK_STATE_"),
        attempt=t.attempt,
        max_attempts=t.max_attempts,
        priority=t.priority,
        idempotency_key=t.idempotency_key,
        idempotent=t.call.idempotent,
        created=_time(t, "create_time"),
        not_before=_time(t, "not_before"),
        started=_time(t, "start_time"),
        finished=_time(t, "finish_time"),
        result=result_from_proto(t.id, t.result) if t.HasField("result") else None,
        error=TaskError(error.code, error.reason, error.message) if error else None,
    )


def state_to_proto(state: str) -> task_pb2.TaskState.ValueType:
    """A TaskState from "queued", "QUEUED" or "TASK_STATE_QUEUED"; InvalidArgument otherwise."""
    name = state.upper().removeprefix("TASK_STATE_")
    try:
        return task_pb2.TaskState.Value("TASK_STATE_" + name)
    except ValueError:
        raise InvalidArgument(
            f"unknown task state {state!r}", field_violations=[("states", "unknown state")]
        ) from None


def tool_from_proto(t: admin_service_pb2.ToolInfo) -> ToolInfo:
    """A ToolInfo from the wire."""
    return ToolInfo(
        name=t.name,
        description=t.description,
        side_effect=task_pb2.SideEffect.Name(t.side_effect).removeprefix("SIDE_EFFECT_"),
        schema=struct_to_dict(t.arguments_schema),
        cacheable=t.cacheable,
    )


def queue_stats_from_proto(r: admin_service_pb2.GetQueueStatsResponse) -> QueueStats:
    """QueueStats from the wire."""
    return QueueStats(
        ready_by_priority={d.priority: d.ready for d in r.depths},
        in_flight=r.in_flight,
        delayed=r.delayed,
        dead=r.dead,
    )


def cache_stats_from_proto(r: admin_service_pb2.GetCacheStatsResponse) -> CacheStats:
    """CacheStats from the wire."""
    return CacheStats(
        enabled=r.enabled,
        tools=[
            ToolCacheStats(t.tool, t.hits, t.misses, t.hit_ratio, t.bytes, t.entries, t.evictions)
            for t in r.tools
        ],
    )
