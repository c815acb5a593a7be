"""The built-in tool set and its permission checks, assembled for the composition root."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clawq_server.policy import paths
from clawq_server.policy.permissions import ArgumentCheck, Permissions
from clawq_server.policy.principal import Principal
from clawq_server.tools.command import ExecuteCommandTool
from clawq_server.tools.files import DeleteFileTool, ListDirectoryTool, ReadFileTool, WriteFileTool
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


def _path_check(write: bool) -> ArgumentCheck:
    def check(principal: Principal, args: Mapping[str, Any]) -> None:
        paths.confine(principal, str(args.get("path", "")), write=write)

    return check


def build(sandbox: str = "auto", remote: Sequence[Mapping[str, Any]] = ()) -> Toolset:
    """Every built-in tool (and plugins from entry points) with their static checks."""
    runner = ProcessRunner(None if sandbox == "auto" else sandbox)
    command, python = ExecuteCommandTool(runner), ExecutePythonTool(runner)
    registry = ToolRegistry()
    for tool in (ReadFileTool(), WriteFileTool(), ListDirectoryTool(), DeleteFileTool()):
        registry.register(tool)
    registry.register(command)
    registry.register(python)
    checks: dict[str, ArgumentCheck] = {
        "read_file": _path_check(write=False),
        "list_directory": _path_check(write=False),
        "write_file": _path_check(write=True),
        "delete_file": _path_check(write=True),
        "execute_command": command.check,
        "execute_python": python.check,
    }
    registry.load_entry_points()
    local = frozenset(registry.names())
    for raw in remote:
        registry.register(remote_tool(raw))
    return Toolset(registry, Permissions(checks), sandbox=runner.sandbox_name, local=local)
