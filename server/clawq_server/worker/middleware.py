"""The execution chain around every tool run: metrics → audit → permission → validation →
cache → timeout → tool. Each link is a small class with one method."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from clawq_server.audit import AuditSink, new_record
from clawq_server.errors import ClawqError, ToolFailure
from clawq_server.model import JsonObject, Task, ToolResult
from clawq_server.tools.base import Tool, ToolContext
from clawq_server.tools.registry import ToolRegistry

Next = Callable[["ToolInvocation"], Awaitable[ToolResult]]
PermissionCheck = Callable[..., None]


@dataclass(frozen=True, slots=True)
class ToolInvocation:
    """One run of one tool: the task, the tool, its arguments and its context."""

    task: Task
    tool: Tool
    args: JsonObject
    ctx: ToolContext


class Middleware(Protocol):
    """One link of the chain."""

    async def __call__(self, call: ToolInvocation, next: Next) -> ToolResult:
        """Handle call, usually by awaiting next(call)."""
        ...


def build_chain(links: Sequence[Middleware]) -> Next:
    """Compose links outermost first around the tool itself."""

    async def run_tool(call: ToolInvocation) -> ToolResult:
        return await call.tool.run(call.args, call.ctx)

    chain: Next = run_tool
    for link in reversed(links):
        chain = _bind(link, chain)
    return chain


def _bind(link: Middleware, next: Next) -> Next:
    # A partial rather than a wrapping coroutine: one coroutine frame per link and run.
    return partial(link, next=next)


class Metrics:
    """Counts runs and outcomes per tool and accumulates run time."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.seconds: defaultdict[str, float] = defaultdict(float)

    async def __call__(self, call: ToolInvocation, next: Next) -> ToolResult:
        """Time the run and count it."""
        start = time.perf_counter()
        name = call.tool.name
        self.calls[name] += 1
        try:
            return await next(call)
        except BaseException:
            self.failures[name] += 1
            raise
        finally:
            self.seconds[name] += time.perf_counter() - start


class Audit:
    """Writes one audit record per executed call with its outcome and duration."""

    def __init__(self, sink: AuditSink) -> None:
        self._sink = sink

    async def __call__(self, call: ToolInvocation, next: Next) -> ToolResult:
        """Run, then record what happened."""
        start = time.perf_counter()
        outcome, reason = "SUCCEEDED", ""
        try:
            result = await next(call)
            if result.exit_code not in (None, 0):
                outcome = "FAILED"
            return result
        except ClawqError as error:
            outcome, reason = "FAILED", error.reason
            raise
        except asyncio.CancelledError:
            outcome, reason = "CANCELLED", "CANCELLED"
            raise
        finally:
            self._sink.record(
                new_record(
                    call.task.principal,
                    call.tool.name,
                    call.args,
                    task_id=call.task.id,
                    attempt=call.task.attempt,
                    decision="deny" if reason == "POLICY_DENIED" else "allow",
                    reason=reason,
                    outcome=outcome,
                    duration_ms=round((time.perf_counter() - start) * 1000, 3),
                )
            )


class Permission:
    """Re-checks policy at run time: the configuration may have changed since admission."""

    def __init__(self, check: PermissionCheck) -> None:
        self._check = check

    async def __call__(self, call: ToolInvocation, next: Next) -> ToolResult:
        """Refuse the run if policy now denies it."""
        self._check(call.ctx.principal, call.tool.name, dict(call.args))
        return await next(call)


class Validation:
    """Validates arguments against the tool's schema (normalising defaults)."""

    def __init__(self, registry: ToolRegistry) -> None:
        self._registry = registry

    async def __call__(self, call: ToolInvocation, next: Next) -> ToolResult:
        """Run with validated arguments."""
        args = self._registry.validate(call.tool.name, call.args)
        return await next(ToolInvocation(call.task, call.tool, args, call.ctx))


class Timeout:
    """Bounds the whole run; tools that spawn processes also enforce their own limits."""

    def __init__(self, default_s: float, grace_s: float = 5.0) -> None:
        self._default = default_s
        self._grace = grace_s

    async def __call__(self, call: ToolInvocation, next: Next) -> ToolResult:
        """Fail the run with DEADLINE_EXCEEDED when it outlives its budget."""
        budget = (call.ctx.timeout or self._default) + self._grace
        try:
            async with asyncio.timeout(budget):
                return await next(call)
        except TimeoutError:
            raise ToolFailure(
                "DEADLINE_EXCEEDED", "TIMEOUT", f"{call.tool.name} ran longer than {budget:g} s"
            ) from None
