"""Real clawq processes for tests: start `clawq serve`/`clawq worker`, learn the port, kill."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LISTENING = re.compile(rb"listening on [\d.]+:(\d+)")
STARTED = re.compile(rb"clawq (listening on|worker running)")


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a clawq subprocess: the source roots on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "client"), str(REPO / "server")])
    env.update(extra)
    return env


@dataclass
class ClawqProcess:
    """A running clawq subprocess and what it printed while starting."""

    proc: asyncio.subprocess.Process
    port: int = 0
    log: list[bytes] = field(default_factory=list)

    @property
    def target(self) -> str:
        """Where its gRPC server listens."""
        return f"127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL: no chance to clean up."""
        self.proc.send_signal(signal.SIGKILL)

    async def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait for a clean exit; the exit status."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), timeout)


async def start_clawq(*args: str, timeout: float = 20.0, **env: str) -> ClawqProcess:
    """Start `clawq <args>` (serve or worker) and wait until it reports it is running."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "clawq_server.main",
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=child_env(**env),
        cwd=str(REPO),
    )
    started = ClawqProcess(proc)
    assert proc.stderr is not None
    async with asyncio.timeout(timeout):
        while True:
            line = await proc.stderr.readline()
            if not line:
                raise RuntimeError(b"".join(started.log).decode(errors="replace"))
            started.log.append(line)
            if (match := LISTENING.search(line)) is not None:
                started.port = int(match.group(1))
            if STARTED.search(line):
                break
    asyncio.get_running_loop().create_task(_drain(proc))
    return started


async def _drain(proc: asyncio.subprocess.Process) -> None:
    assert proc.stderr is not None
    while await proc.stderr.readline():
        pass
