"""The tool registry: tools by name with their compiled argument schemas, and plugin loading."""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any, NamedTuple

from clawq_server.errors import NotFound
from clawq_server.model import JsonObject, SideEffect
from clawq_server.tools.base import Tool
from clawq_server.tools.schema import Validator, compile_schema

log = logging.getLogger("clawq.tools")

ENTRY_POINT_GROUP = "clawq.tools"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class Registered(NamedTuple):
    """A tool and its compiled argument validator."""

    tool: Tool
    validate: Validator


class ToolRegistry:
    """Tools by name; each registration compiles the tool's schema once."""

    def __init__(self) -> None:
        self._entries: dict[str, Registered] = {}

    def register(self, tool: Tool) -> None:
        """Add a tool. Raises ValueError for a taken or malformed name or a bad schema."""
        check_tool(tool)
        if tool.name in self._entries:
            raise ValueError(f"a tool named {tool.name!r} is already registered")
        self._entries[tool.name] = Registered(tool, compile_schema(tool.schema))

    def find(self, name: str) -> Registered | None:
        """The named tool with its validator, or None (one lookup for admission's hot path)."""
        return self._entries.get(name)

    def get(self, name: str) -> Tool:
        """The named tool; raises NotFound (TOOL_NOT_FOUND) for an unknown name."""
        return self._found(name).tool

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        """Every tool name, sorted."""
        return sorted(self._entries)

    def tools(self) -> list[Tool]:
        """Every tool, sorted by name."""
        return [self._entries[name].tool for name in self.names()]

    def validate(self, name: str, args: JsonObject) -> dict[str, Any]:
        """The arguments checked against the tool's schema, with defaults filled in.

        Raises NotFound for an unknown tool and InvalidArgument (TOOL_ARGUMENTS_INVALID)
        naming the field for bad arguments.
        """
        return self._found(name).validate(args)

    def _found(self, name: str) -> Registered:
        found = self._entries.get(name)
        if found is None:
            raise NotFound(f"unknown tool {name!r}", reason="TOOL_NOT_FOUND")
        return found

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> list[str]:
        """Register the tools advertised by installed packages; returns the names added.

        An entry point may name a Tool instance, a Tool class or a factory returning one.
        A plugin that fails to load is logged and skipped, so one broken package does not
        take the built-in tools down with it.
        """
        added: list[str] = []
        for point in sorted(entry_points(group=group), key=lambda p: p.name):
            try:
                tool = _instantiate(point.load())
                self.register(tool)
            except Exception:
                log.exception("tool plugin %s (%s) was not loaded", point.name, point.value)
                continue
            added.append(tool.name)
        return added


def _instantiate(obj: Any) -> Tool:
    if inspect.isclass(obj) or (callable(obj) and not hasattr(obj, "run")):
        obj = obj()
    return obj  # type: ignore[no-any-return]  # check_tool verifies the shape


def check_tool(tool: Any) -> None:
    """Raise TypeError/ValueError unless tool has the shape of the Tool protocol."""
    name = getattr(tool, "name", None)
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"tool name {name!r} must match {_NAME.pattern}")
    if not isinstance(getattr(tool, "description", None), str):
        raise TypeError(f"tool {name!r} needs a description string")
    if not isinstance(getattr(tool, "side_effect", None), SideEffect):
        raise TypeError(f"tool {name!r} needs a SideEffect side_effect")
    if not isinstance(getattr(tool, "cacheable", None), bool):
        raise TypeError(f"tool {name!r} needs a bool cacheable")
    schema = getattr(tool, "schema", None)
    if not isinstance(schema, Mapping) or schema.get("type") != "object":
        raise TypeError(f"tool {name!r} needs an object JSON Schema")
    if not inspect.iscoroutinefunction(getattr(tool, "run", None)):
        raise TypeError(f"tool {name!r} needs an async run(args, ctx)")
