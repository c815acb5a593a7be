"""Tool argument schemas: compiled once with fastjsonschema; failures become field violations."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from math import isfinite
from typing import Any

import fastjsonschema

from clawq_server.errors import FieldViolation, InvalidArgument
from clawq_server.model import JsonObject

REASON = "TOOL_ARGUMENTS_INVALID"

Validator = Callable[[JsonObject], dict[str, Any]]


def compile_schema(schema: JsonObject) -> Validator:
    """A validator returning a normalised copy of the arguments (defaults filled in).

    Raises ValueError when the schema itself is not a valid JSON Schema.
    """
    try:
        check = fastjsonschema.compile(_thaw(schema), use_default=True)
    except fastjsonschema.JsonSchemaDefinitionException as error:
        raise ValueError(f"invalid argument schema: {error}") from error

    closed = schema.get("additionalProperties") is False
    known = frozenset(schema.get("properties", {}))

    def validate(args: JsonObject) -> dict[str, Any]:
        if type(args) is not dict and not isinstance(args, Mapping):
            raise InvalidArgument.field("args", "must be an object", reason=REASON)
        if closed and not known.issuperset(args):
            # Named before anything else: a misspelled argument also looks like a missing one.
            name = sorted(set(args) - known)[0]
            raise InvalidArgument.field(
                f"args.{name}", "is not an argument of this tool", reason=REASON
            )
        # Defaults are written into the data, so validate a copy and leave the caller's alone.
        try:
            data = _thaw(args)
        except NotFinite as error:
            field = ".".join(["args", *reversed(error.path)])
            raise InvalidArgument.field(field, "must be a finite number", reason=REASON) from None
        try:
            result: dict[str, Any] = check(data)
        except fastjsonschema.JsonSchemaValueException as error:
            raise to_invalid_argument(error) from None
        return result

    return validate


def to_invalid_argument(error: fastjsonschema.JsonSchemaValueException) -> InvalidArgument:
    """An InvalidArgument naming the offending field as ``args.<name>``."""
    field = _field(error)
    description = _describe(error, field)
    return InvalidArgument(
        f"{field}: {description}", [FieldViolation(field, description)], reason=REASON
    )


def _field(error: fastjsonschema.JsonSchemaValueException) -> str:
    path = [str(p) for p in (error.path or ["data"])[1:]]
    # required and additionalProperties fail on the object; name the property instead.
    named = _property_named(error)
    if named is not None:
        path.append(named)
    return ".".join(["args", *path])


def _property_named(error: fastjsonschema.JsonSchemaValueException) -> str | None:
    value, definition = error.value, error.definition
    if not isinstance(value, Mapping) or not isinstance(definition, Mapping):
        return None
    if error.rule == "required":
        missing = [k for k in definition.get("required", ()) if k not in value]
        return str(missing[0]) if missing else None
    if error.rule == "additionalProperties":
        known = definition.get("properties", {})
        extra = sorted(str(k) for k in value if k not in known)
        return extra[0] if extra else None
    return None


def _describe(error: fastjsonschema.JsonSchemaValueException, field: str) -> str:
    if error.rule == "required":
        return "is required"
    if error.rule == "additionalProperties":
        return "is not a known argument"
    message = str(error.message)
    prefix = str(error.name or "data")
    if message.startswith(prefix + " "):
        return message[len(prefix) + 1 :]
    return message.replace("data", field, 1)


class NotFinite(ValueError):
    """A NaN or infinite number: JSON has no such value, and no bound in a schema stops it."""

    def __init__(self) -> None:
        super().__init__("not a finite number")
        self.path: list[str] = []  # innermost first


# Values that are copied as they are; checked by exact type, which costs far less than an
# isinstance() against the Mapping ABC on every argument of every call.
_SCALARS = frozenset({str, int, bool, type(None)})


def _thaw(value: Any) -> Any:
    """A copy of nested mappings and lists as plain dicts and lists; NotFinite at a NaN or
    an infinity."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is float:
        if not isfinite(value):
            raise NotFinite
        return value
    if kind is dict or isinstance(value, Mapping):
        copy = dict(value)
        for key, item in copy.items():
            if type(item) not in _SCALARS:
                copy[key] = _thaw_in(item, str(key))
        return copy
    if isinstance(value, list | tuple):
        return [_thaw_in(v, str(i)) for i, v in enumerate(value)]
    return value


def _thaw_in(value: Any, name: str) -> Any:
    try:
        return _thaw(value)
    except NotFinite as error:
        error.path.append(name)
        raise
