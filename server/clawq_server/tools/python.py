"""The execute_python tool: statically checked code in a separate sandboxed interpreter."""

from __future__ import annotations

import os
import shutil
from typing import Any

from clawq_server.errors import InvalidArgument, PolicyDenied
from clawq_server.model import JsonObject, SideEffect, ToolResult
from clawq_server.policy.commands import FIXED_PATH, build_env, resolve_cwd
from clawq_server.policy.principal import Principal
from clawq_server.policy.python import check_python
from clawq_server.tools.base import ToolContext
from clawq_server.tools.command import RUN_PROPERTIES, run_spec
from clawq_server.tools.process import ProcessRunner
from clawq_server.tools.sandbox import SandboxMode
from clawq_server.tools.schema import compile_schema

# The code travels as one argv string, which Linux caps at 128 KiB.
MAX_CODE_BYTES = 100_000

PYTHON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["code"],
    "properties": {
        "code": {"type": "string", "minLength": 1, "description": "Python source to run."},
        **RUN_PROPERTIES,
    },
}


def system_python() -> str:
    """The system interpreter (visible inside the sandbox's read-only /usr)."""
    found = shutil.which("python3", path=FIXED_PATH)
    if found is None:
        raise RuntimeError("no python3 on the fixed PATH")
    return os.path.realpath(found)


class ExecutePythonTool:
    """Runs Python code with ``python -I -S`` under the same sandbox and limits as commands.

    Refused unless the principal has python_enabled, and outside bubblewrap unless the
    operator allowed it (without_sandbox): the static check (policy/python.py) refuses
    obvious abuse early, but only the sandbox is a boundary.
    """

    name = "execute_python"
    description = (
        "Run Python code in a separate, isolated interpreter inside the sandbox; imports "
        "are limited to an allow list and file access goes through the file tools."
    )
    side_effect = SideEffect.WRITE
    cacheable = False
    schema: JsonObject = PYTHON_SCHEMA

    def __init__(
        self,
        runner: ProcessRunner,
        *,
        interpreter: str | None = None,
        without_sandbox: bool = False,
    ) -> None:
        """Run code with ``interpreter`` (default: python3 from the fixed PATH)."""
        self._runner = runner
        self._contained = runner.sandbox_name == SandboxMode.BWRAP.value or without_sandbox
        self._interpreter = interpreter or system_python()
        self._validate = compile_schema(PYTHON_SCHEMA)

    def check(self, principal: Principal, args: JsonObject) -> None:
        """The policy check alone (for admission): raises PolicyDenied or InvalidArgument."""
        self._checked(principal, args)

    async def run(self, args: JsonObject, ctx: ToolContext) -> ToolResult:
        """Check the code, run it, and report how it ended."""
        checked = self._checked(ctx.principal, args)
        cwd = resolve_cwd(ctx.principal, checked["cwd"])
        env = build_env(ctx.principal, {})
        argv = (self._interpreter, "-I", "-S", "-B", "-c", checked["code"])
        outcome = await self._runner.run(run_spec(argv, cwd, env, checked, ctx), ctx.cancelled)
        return outcome.to_result()

    def _checked(self, principal: Principal, args: JsonObject) -> dict[str, Any]:
        if not principal.python_enabled:
            raise PolicyDenied(f"execute_python is not enabled for principal {principal.name!r}")
        if not self._contained:
            raise PolicyDenied(
                f"execute_python needs the bwrap sandbox; this server runs "
                f"{self._runner.sandbox_name!r} (python_without_sandbox = true in [server] "
                "accepts that)"
            )
        checked = self._validate(args)
        code: str = checked["code"]
        if len(code.encode()) > MAX_CODE_BYTES:
            raise InvalidArgument.field("args.code", f"is over {MAX_CODE_BYTES} bytes")
        check_python(code, principal.python_imports)
        resolve_cwd(principal, checked["cwd"])
        return checked
