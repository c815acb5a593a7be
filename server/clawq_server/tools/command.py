"""The execute_command tool: an allow-listed program, argv only, in the sandbox."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from clawq_server.errors import InvalidArgument
from clawq_server.model import JsonObject, SideEffect, ToolResult
from clawq_server.policy.commands import plan_command
from clawq_server.policy.path_rules import check_root, resolve_root
from clawq_server.policy.principal import Limits, Principal
from clawq_server.tools.base import ToolContext
from clawq_server.tools.process import ProcessRunner, ProcessSpec
from clawq_server.tools.sandbox import Mount
from clawq_server.tools.schema import compile_schema

RUN_PROPERTIES: dict[str, Any] = {
    "cwd": {
        "type": "string",
        "default": "",
        "description": "Working directory inside an allowed root; empty: the first root.",
    },
    "stdin": {"type": "string", "default": "", "description": "Text written to standard input."},
    "timeout_s": {
        "type": "number",
        "minimum": 0,
        "default": 0,
        "description": "Wall-clock limit in seconds; 0: the policy default.",
    },
    "idle_timeout_s": {
        "type": "number",
        "minimum": 0,
        "default": 0,
        "description": "Kill after this long without output; 0: the default.",
    },
    "max_output_bytes": {
        "type": "integer",
        "minimum": 0,
        "default": 0,
        "description": "Cap on stdout and stderr each; 0: the policy cap.",
    },
}

COMMAND_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["argv"],
    "properties": {
        "argv": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string"},
            "description": "The program and its arguments; never a shell string.",
        },
        "env": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "default": {},
            "description": "Extra environment variables; only names the policy allows.",
        },
        **RUN_PROPERTIES,
    },
}


def mounts_for(principal: Principal) -> tuple[Mount, ...]:
    """The principal's roots as sandbox mounts (read-only roots stay read-only)."""
    mounts = []
    for root in principal.roots:
        resolved = resolve_root(root)
        with contextlib.suppress(FileNotFoundError):  # a missing root fails its bind itself
            check_root(root, os.stat(resolved))
        mounts.append(Mount(str(resolved), root.writable, root.identity))
    return tuple(mounts)


def run_spec(
    argv: tuple[str, ...], cwd: Path, env: dict[str, str], args: JsonObject, ctx: ToolContext
) -> ProcessSpec:
    """The process spec for a checked call: limits from the principal, requests capped."""
    limits = ctx.principal.limits
    stdin = str(args.get("stdin", "")).encode()
    if len(stdin) > limits.max_stdin_bytes:
        raise InvalidArgument.field(
            "args.stdin", f"is {len(stdin)} bytes, over the limit of {limits.max_stdin_bytes}"
        )
    return ProcessSpec(
        argv=argv,
        cwd=cwd,
        env=env,
        mounts=mounts_for(ctx.principal),
        limits=limits,
        stdin=stdin,
        timeout_s=wall_timeout(args, limits, ctx.timeout),
        idle_timeout_s=float(args.get("idle_timeout_s") or limits.idle_timeout_s),
        max_output_bytes=_cap(int(args.get("max_output_bytes") or 0), limits.max_output_bytes),
    )


def wall_timeout(args: JsonObject, limits: Limits, deadline: float | None) -> float:
    """The requested timeout (or the default), capped by policy and by the task's deadline."""
    requested = float(args.get("timeout_s") or limits.timeout_s)
    timeout = min(requested, limits.max_timeout_s)
    return min(timeout, deadline) if deadline else timeout


def _cap(requested: int, limit: int) -> int:
    return limit if requested <= 0 else min(requested, limit)


class ExecuteCommandTool:
    """Runs an allow-listed executable with checked arguments, limits and a sandbox.

    A non-zero exit or a timeout is a result (see ProcessOutcome for how exit status and
    signals are reported); a policy refusal raises PolicyDenied naming the argument.
    """

    name = "execute_command"
    description = (
        "Run an allowed program (argv list, never a shell) in a working directory inside the "
        "allowed roots, with a scrubbed environment, resource limits and timeouts."
    )
    side_effect = SideEffect.WRITE
    cacheable = False
    schema: JsonObject = COMMAND_SCHEMA

    def __init__(self, runner: ProcessRunner) -> None:
        """Run commands through ``runner`` (one runner serves every call)."""
        self._runner = runner
        self._validate = compile_schema(COMMAND_SCHEMA)

    def check(self, principal: Principal, args: JsonObject) -> None:
        """The policy check alone (for admission): raises PolicyDenied or InvalidArgument."""
        checked = self._validate(args)
        plan_command(principal, checked["argv"], cwd=checked["cwd"], env=checked["env"])

    async def run(self, args: JsonObject, ctx: ToolContext) -> ToolResult:
        """Check the call against policy, run it, and report how it ended."""
        checked = self._validate(args)
        plan = plan_command(ctx.principal, checked["argv"], cwd=checked["cwd"], env=checked["env"])
        spec = run_spec(plan.argv, plan.cwd, dict(plan.env), checked, ctx)
        outcome = await self._runner.run(spec, ctx.cancelled)
        return outcome.to_result()
