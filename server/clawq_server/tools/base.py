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

    @property
    def name(self) -> str:
        """The name calls use."""
        ...

    @property
    def description(self) -> str:
        """What the tool does, for ListTools."""
        ...

    @property
    def side_effect(self) -> SideEffect:
        """What running it may change."""
        ...

    @property
    def cacheable(self) -> bool:
        """True when its results may be served from the cache."""
        ...

    @property
    def schema(self) -> JsonObject:
        """JSON Schema of its arguments."""
        ...

    async def run(self, args: JsonObject, ctx: ToolContext) -> ToolResult:
        """Run the tool."""
        ...


class CheckedTool(Tool, Protocol):
    """A tool with a static policy check cheap enough to run at admission."""

    def check(self, principal: Principal, args: JsonObject) -> None:
        """Raise PolicyDenied or InvalidArgument when policy refuses the call."""
        ...
