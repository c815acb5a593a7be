"""What the file tools share: schema validation, the static path check, running off the loop."""

from __future__ import annotations

from functools import partial
from typing import Any, ClassVar

from clawq_server.model import JsonObject, SideEffect, ToolResult
from clawq_server.offload import Offload
from clawq_server.policy import paths
from clawq_server.policy.principal import Principal
from clawq_server.tools.base import ToolContext
from clawq_server.tools.schema import compile_schema

PATH_MAX = 4096
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

# Shared by every file tool, as asyncio's default executor would be; the composition root
# closes it at shutdown (builtin.finish_file_calls).
OFFLOAD = Offload(name="clawq-files")


def path_property(description: str, *, required: bool = True) -> dict[str, Any]:
    """The JSON Schema of a ``path`` argument."""
    prop: dict[str, Any] = {"type": "string", "maxLength": PATH_MAX, "description": description}
    if required:
        prop["minLength"] = 1
    else:
        prop["default"] = ""
    return prop


def count_property(description: str, maximum: int) -> dict[str, Any]:
    """The JSON Schema of a non-negative integer argument where 0 means the policy cap."""
    return {
        "type": "integer",
        "minimum": 0,
        "maximum": maximum,
        "default": 0,
        "description": description,
    }


def flag_property(description: str) -> dict[str, Any]:
    """The JSON Schema of a boolean argument that defaults to false."""
    return {"type": "boolean", "default": False, "description": description}


def cap(requested: int, limit: int) -> int:
    """The requested amount bounded by the policy limit; 0 asks for the limit itself."""
    return limit if requested <= 0 else min(int(requested), limit)


class FileTool:
    """Base of the file tools: subclasses set the class attributes and implement run_sync.

    ``run`` re-validates (filling defaults, so tools work when called directly) and runs
    run_sync in a thread: file I/O never blocks the event loop.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    side_effect: ClassVar[SideEffect]
    cacheable: ClassVar[bool]
    schema: ClassVar[JsonObject]

    def __init__(self) -> None:
        self._validate = compile_schema(self.schema)

    def validate(self, args: JsonObject) -> dict[str, Any]:
        """The arguments checked against the schema with defaults filled in."""
        return self._validate(args)

    def check(self, principal: Principal, args: JsonObject) -> None:
        """The static policy check, without touching the filesystem (for admission)."""
        writes = self.side_effect is SideEffect.WRITE
        paths.check_path(principal, str(args.get("path", "")), write=writes, field="args.path")

    async def run(self, args: JsonObject, ctx: ToolContext) -> ToolResult:
        """Run the tool on one of the file tools' threads."""
        checked = self._validate(args)
        return await OFFLOAD.run(partial(self.run_sync, ctx.principal, checked))

    def run_sync(self, principal: Principal, args: dict[str, Any]) -> ToolResult:
        """The blocking implementation."""
        raise NotImplementedError
