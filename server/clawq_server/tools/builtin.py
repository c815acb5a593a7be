"""The built-in tool set and its permission checks, assembled for the composition root."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clawq_server.policy.permissions import ArgumentCheck, Permissions
from clawq_server.tools.base import CheckedTool
from clawq_server.tools.command import ExecuteCommandTool
from clawq_server.tools.files import file_tools
from clawq_server.tools.files_base import OFFLOAD
from clawq_server.tools.process import ProcessRunner
from clawq_server.tools.python import ExecutePythonTool
from clawq_server.tools.registry import ToolRegistry
from clawq_server.tools.remote import remote_tool


@dataclass(frozen=True, slots=True)
class Toolset:
    """A registry of tools, the permission check that guards them, the sandbox in use."""

    registry: ToolRegistry
    permissions: Permissions
    sandbox: str
    local: frozenset[str]

    @property
    def remote(self) -> frozenset[str]:
        """Tools only external workers run."""
        return frozenset(self.registry.names()) - self.local


def build(
    sandbox: str = "auto",
    remote: Sequence[Mapping[str, Any]] = (),
    *,
    python_without_sandbox: bool = False,
) -> Toolset:
    """Every built-in tool (and plugins from entry points) with their static checks."""
    runner = ProcessRunner(None if sandbox == "auto" else sandbox)
    command = ExecuteCommandTool(runner)
    python = ExecutePythonTool(runner, without_sandbox=python_without_sandbox)
    registry = ToolRegistry()
    checks: dict[str, ArgumentCheck] = {}
    builtins: list[CheckedTool] = [*file_tools(), command, python]
    for tool in builtins:
        registry.register(tool)
        checks[tool.name] = tool.check
    registry.load_entry_points()
    local = frozenset(registry.names())
    for raw in remote:
        registry.register(remote_tool(raw))
    return Toolset(registry, Permissions(checks), sandbox=runner.sandbox_name, local=local)


async def finish_file_calls() -> None:
    """Wait for file tool calls still running: a run cut short at shutdown ends its write."""
    await OFFLOAD.close()
