"""Helpers for the process tests: a workspace with a secret outside it, survivor checks."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from clawq_server.policy.principal import DEFAULT_COMMANDS, Limits, Principal, Root
from clawq_server.tools.base import ToolContext
from clawq_server.tools.process import ProcessSpec
from clawq_server.tools.sandbox import Mount, Sandbox, SandboxMode

# Off the default list (see principal.py), given to the test principal explicitly.
OPT_IN_COMMANDS = ("git", "tar")

PROC_SECRET = "PROC-SECRET-OUTSIDE-THE-ROOT"
HAS_BWRAP = shutil.which("bwrap") is not None and Sandbox.detect() is SandboxMode.BWRAP
needs_bwrap = pytest.mark.skipif(not HAS_BWRAP, reason="bubblewrap is not installed")
MODES = [pytest.param("bwrap", marks=needs_bwrap), "subreaper"]


@dataclass
class ProcWorkspace:
    """A root the principal may use, an outside directory with a secret, and a run marker."""

    root: Path
    outside: Path
    marker: str

    def principal(self, **changes: Any) -> Principal:
        """A principal confined to ``root``; the marker variable may be passed through."""
        base = Principal(
            name="attacker",
            roots=(Root(self.root),),
            env_allow=frozenset({"CLAWQ_MARK"}),
            commands=(*DEFAULT_COMMANDS, *OPT_IN_COMMANDS),  # their rules are under test too
        )
        return replace(base, **changes)

    def ctx(self, principal: Principal | None = None) -> ToolContext:
        """A tool context for one call."""
        return ToolContext(principal or self.principal(), "task-" + self.marker)

    def env(self) -> dict[str, str]:
        """The env addition that tags every process of this test."""
        return {"CLAWQ_MARK": self.marker}

    def spec(self, *argv: str, **changes: Any) -> ProcessSpec:
        """A runner spec below policy: any argv, tagged with the marker, root mounted."""
        env = {
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "HOME": str(self.root),
            "CLAWQ_MARK": self.marker,
        }
        fields: dict[str, Any] = {
            "argv": argv,
            "cwd": self.root,
            "env": env,
            "mounts": (Mount(str(self.root), True),),
            "limits": Limits(),
            "timeout_s": 20.0,
        }
        fields.update(changes)
        return ProcessSpec(**fields)

    def outside_snapshot(self) -> dict[str, bytes]:
        """Every file outside the root with its content, to show nothing changed."""
        return {str(p): p.read_bytes() for p in sorted(self.outside.rglob("*")) if p.is_file()}


def survivors(marker: str) -> list[int]:
    """Processes whose environment or command line carries the marker."""
    needle = marker.encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        for name in ("environ", "cmdline"):
            try:
                if needle in Path("/proc", entry, name).read_bytes():
                    found.append(int(entry))
                    break
            except OSError:
                continue
    return found


def wait_no_survivors(marker: str, within: float = 5.0) -> list[int]:
    """Poll until no marked process is left; the stragglers at the deadline."""
    deadline = time.monotonic() + within
    while (left := survivors(marker)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return left
