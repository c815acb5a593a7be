"""The tool protocol and the context every run gets."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

from clawq_server.model import JsonObject, SideEffect, ToolResult
from clawq_server.policy.principal import Principal


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a running tool may know: who asked, which task, and when to stop."""

    principal: Principal
    task_id: str
    timeout: float | None = None
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)


class Tool(Protocol):
    """A tool clawq can run. Arguments arrive validated against ``schema``.

    ``run`` returns a ToolResult or raises ToolFailure (the task ends FAILED) or
    PolicyDenied (the task ends FAILED with code PERMISSION_DENIED).
    """

    name: str
    description: str
    side_effect: SideEffect
    cacheable: bool
    schema: JsonObject

    async def run(self, args: JsonObject, ctx: ToolContext) -> ToolResult:
        """Run the tool."""
        ...
