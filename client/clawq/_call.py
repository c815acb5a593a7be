"""Call to ToolCall: typed messages for built-in tools, a Struct for the rest."""

from __future__ import annotations

import base64
import contextlib
import re
from collections.abc import Callable, Mapping
from typing import Any

from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from clawq.errors import InvalidArgument
from clawq.types import Call
from clawq.v1 import task_pb2

#: Built-in tools whose arguments travel as a typed message (the ToolCall oneof field's name).
BUILTIN_ARGS: dict[str, type[Message]] = {
    "read_file": task_pb2.ReadFileArgs,
    "write_file": task_pb2.WriteFileArgs,
    "list_directory": task_pb2.ListDirectoryArgs,
    "delete_file": task_pb2.DeleteFileArgs,
    "execute_command": task_pb2.ExecuteCommandArgs,
    "execute_python": task_pb2.ExecutePythonArgs,
}

_F = FieldDescriptor
_INTS = (_F.TYPE_INT32, _F.TYPE_INT64, _F.TYPE_UINT32, _F.TYPE_UINT64, _F.TYPE_SINT32)
_CHECKS: dict[int, Callable[[Any], bool]] = {
    _F.TYPE_STRING: lambda v: isinstance(v, str),
    _F.TYPE_BYTES: lambda v: isinstance(v, bytes | bytearray | memoryview),
    _F.TYPE_BOOL: lambda v: isinstance(v, bool),
    _F.TYPE_DOUBLE: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    _F.TYPE_FLOAT: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    **{t: (lambda v: isinstance(v, int) and not isinstance(v, bool)) for t in _INTS},
}


class _Misfit(Exception):
    """An argument that the tool's typed message cannot carry."""

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}")
        self.field = field
        self.why = why


def call_to_proto(call: Call) -> task_pb2.ToolCall:
    """The wire form of a call.

    A built-in tool's arguments go as its typed message. When an argument does not fit
    that message (an unknown name, a wrong type), the arguments go as a Struct instead, so
    the server's schema validation names the field in its INVALID_ARGUMENT answer (bytes
    fields go as base64, enums by name, as the server reads them). Only a value JSON cannot
    carry (e.g. bytes in a plugin tool's arguments) raises InvalidArgument here.
    """
    msg = _options(call)
    misfit: _Misfit | None = None
    args = call.args
    typed = BUILTIN_ARGS.get(call.tool)
    if typed is not None:
        try:
            args = _aliased(call.tool, args)
            message = typed()
            _fill(message, args)
        except _Misfit as exc:
            misfit = exc
        else:
            getattr(msg, call.tool).CopyFrom(message)
            getattr(msg, call.tool).SetInParent()
            return msg
    if typed is not None:
        args = _as_json_fields(typed, args)
    msg.arguments.update(_json_args(call.tool, args, misfit))
    msg.arguments.SetInParent()
    return msg


def _options(call: Call) -> task_pb2.ToolCall:
    """A ToolCall with the call's options; InvalidArgument when one has the wrong type."""
    try:
        msg = task_pb2.ToolCall(
            tool=call.tool,
            idempotency_key=call.idempotency_key,
            priority=call.priority,
            max_attempts=call.max_attempts,
            idempotent=call.idempotent,
        )
        if call.delay is not None:
            msg.delay.FromTimedelta(call.delay)
    except (TypeError, ValueError, AttributeError) as exc:
        raise InvalidArgument(f"{call.tool}: invalid call option: {exc}") from exc
    return msg


def _aliased(tool: str, args: Mapping[str, Any]) -> Mapping[str, Any]:
    """write_file's ``content`` alias: str content is ``text``, bytes content is ``data``."""
    if tool != "write_file" or "content" not in args:
        return args
    out = dict(args)
    content = out.pop("content")
    name = "text" if isinstance(content, str) else "data"
    if name in out:
        raise _Misfit("content", f"given together with {name}")
    out[name] = content
    return out


def _fill(msg: Message, args: Mapping[str, Any]) -> None:
    """Set every argument on the typed message, or raise _Misfit naming the first misfit."""
    # Any: the stubs type descriptors as a union of the upb and pure-Python classes.
    fields: Mapping[str, Any] = msg.DESCRIPTOR.fields_by_name
    for name, value in args.items():
        field = fields.get(name)
        if field is None:
            raise _Misfit(name, "unknown argument")
        try:
            _set(msg, field, value)
        except (TypeError, ValueError) as exc:
            raise _Misfit(name, f"wrong type or value ({exc})") from exc


def _set(msg: Message, field: FieldDescriptor, value: Any) -> None:
    """Set one field, checking the value's type strictly (protobuf would coerce some)."""
    target = getattr(msg, field.name)
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise TypeError("expected a mapping of strings to strings")
        target.update(value)
    elif field.is_repeated:
        if not isinstance(value, list | tuple):
            raise TypeError("expected a list")
        target.extend(_scalar(field, item) for item in value)
    else:
        setattr(msg, field.name, _scalar(field, value))


def _scalar(field: FieldDescriptor, value: Any) -> Any:
    if field.type == _F.TYPE_ENUM:
        return _enum_number(field, value)
    check = _CHECKS.get(field.type)
    if check is None or not check(value):
        raise TypeError(f"{type(value).__name__} is not a {_type_name(field)}")
    return bytes(value) if field.type == _F.TYPE_BYTES else value


def _type_name(field: FieldDescriptor) -> str:
    return {_F.TYPE_STRING: "string", _F.TYPE_BYTES: "bytes", _F.TYPE_BOOL: "bool"}.get(
        field.type, "number"
    )


def enum_prefix(name: str) -> str:
    """WriteMode -> "WRITE_MODE_": the prefix buf style puts on every value."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper() + "_"


def enum_type(field: FieldDescriptor) -> EnumDescriptor:
    if field.enum_type is None:
        raise TypeError(f"{field.name} is not an enum")
    return field.enum_type


def _enum_number(field: FieldDescriptor, value: Any) -> int:
    """An enum value from its short name ("create"), full name or number."""
    enum = enum_type(field)
    if isinstance(value, str):
        full = value.upper()
        if not full.startswith(enum_prefix(enum.name)):
            full = enum_prefix(enum.name) + full
        if full in enum.values_by_name:
            return int(enum.values_by_name[full].number)
    elif isinstance(value, int) and not isinstance(value, bool) and value in enum.values_by_number:
        return value
    raise ValueError(f"{value!r} is not one of {_enum_names(field)}")


def _enum_names(field: FieldDescriptor) -> list[str]:
    enum = enum_type(field)
    prefix = enum_prefix(enum.name)
    return [v.name.removeprefix(prefix).lower() for v in enum.values if v.number]


def _as_json_fields(typed: type[Message], args: Mapping[str, Any]) -> dict[str, Any]:
    """A built-in's arguments as the server reads them from a Struct.

    Bytes fields go as base64 and enum values by their full names; everything else is left
    as given for the server's schema validation to judge.
    """
    fields: Mapping[str, Any] = typed.DESCRIPTOR.fields_by_name  # Any: see _fill
    out = dict(args)
    for name, value in args.items():
        field = fields.get(name)
        if field is None:
            continue
        if field.type == _F.TYPE_BYTES and isinstance(value, bytes | bytearray | memoryview):
            out[name] = base64.b64encode(value).decode("ascii")
        elif field.type == _F.TYPE_ENUM:
            with contextlib.suppress(TypeError, ValueError):
                out[name] = enum_type(field).values_by_number[_enum_number(field, value)].name
    return out


def _json_args(tool: str, args: Mapping[str, Any], misfit: _Misfit | None) -> dict[str, Any]:
    """The arguments as JSON values for a Struct, or InvalidArgument naming the field."""
    out: dict[str, Any] = {}
    for name, value in args.items():
        try:
            out[name] = _json_value(value)
        except TypeError as exc:
            field, why = (misfit.field, misfit.why) if misfit else (name, str(exc))
            raise InvalidArgument(
                f"{tool}: argument {field!r}: {why}", field_violations=[(field, why)]
            ) from exc
    return out


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: _json_value(v) for k, v in value.items()}
    raise TypeError(f"{type(value).__name__} cannot be sent as JSON")
