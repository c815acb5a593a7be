"""Tools served by external workers (any language, over WorkerService), declared in config."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from clawq_server.errors import ToolFailure
from clawq_server.model import JsonObject, SideEffect, ToolResult
from clawq_server.tools.base import ToolContext

ANY_OBJECT: JsonObject = {"type": "object"}


@dataclass(frozen=True, slots=True)
class RemoteTool:
    """A tool clawq admits and queues but never runs itself: a WorkerService worker does."""

    name: str
    description: str = ""
    side_effect: SideEffect = SideEffect.WRITE
    cacheable: bool = False
    schema: JsonObject = field(default_factory=lambda: dict(ANY_OBJECT))

    async def run(self, args: JsonObject, ctx: ToolContext) -> ToolResult:
        """Never called: in-process workers do not lease remote tools."""
        raise ToolFailure("UNIMPLEMENTED", "REMOTE_TOOL", f"{self.name} runs on external workers")


def remote_tool(raw: Mapping[str, Any]) -> RemoteTool:
    """A RemoteTool from a `[[tools]]` table of the config file."""
    return RemoteTool(
        name=str(raw["name"]),
        description=str(raw.get("description", "")),
        side_effect=SideEffect(raw.get("side_effect", SideEffect.WRITE.value)),
        cacheable=False,
        schema=dict(raw.get("schema", ANY_OBJECT)),
    )
