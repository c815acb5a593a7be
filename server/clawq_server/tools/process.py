"""The sandboxed process runner: limits, timeouts, output caps, and killing the whole tree.

The runner is below policy: it runs any argv it is given. Callers (the execute_command
and execute_python tools) decide what may run. Guarantees, in both sandbox modes:

- the process tree never outlives ``run`` (timeout, idle timeout, output overflow,
  ``cancelled`` being set, and task cancellation all kill it, and so does the command
  ending: background children die with it);
- stdout and stderr are captured up to ``max_output_bytes`` each; one byte more kills
  the tree and marks that stream truncated (reading on and discarding would let a
  runaway writer burn CPU for the whole timeout);
- a process that ended by a signal reports ``exit_code=None`` and ``signal=N``; a
  process the runner killed reports ``signal=9`` (SIGKILL). In bwrap mode a signal death
  inside the sandbox reaches the runner as bwrap's exit status 128+N, which is reported
  as ``signal=N`` (so a command that itself exits 129..192 is reported as signalled).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from clawq_server.errors import PolicyDenied
from clawq_server.model import ToolResult
from clawq_server.policy.principal import Limits
from clawq_server.tools.pipes import Capture, Feed
from clawq_server.tools.sandbox import Mount, PidsCgroups, RLimits, Sandbox, SandboxMode

_KILL_GRACE_S = 5.0
_DRAIN_S = 5.0
_MAX_SIGNAL = 64
_SHELL_SIGNAL = 128  # bwrap reports a child's death by signal N as exit status 128+N


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    """One process to run: argv[0] absolute, a scrubbed env, and the directories it sees."""

    argv: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str]
    mounts: tuple[Mount, ...]
    limits: Limits = field(default_factory=Limits)
    stdin: bytes = b""
    timeout_s: float = 30.0
    idle_timeout_s: float = 0.0  # 0: no idle timeout
    max_output_bytes: int = 1 << 20


@dataclass(frozen=True, slots=True)
class ProcessOutcome:
    """How a process ended and what it wrote."""

    stdout: bytes
    stdout_truncated: bool
    stderr: bytes
    stderr_truncated: bool
    exit_code: int | None
    signal: int
    timed_out: bool
    idle_timed_out: bool
    sandbox: str

    def to_result(self) -> ToolResult:
        """The tool result: output, exit status and a payload naming the sandbox."""
        payload = {
            "timed_out": self.timed_out,
            "idle_timed_out": self.idle_timed_out,
            "sandbox": self.sandbox,
        }
        return ToolResult(
            output=self.stdout,
            truncated=self.stdout_truncated,
            stderr=self.stderr,
            stderr_truncated=self.stderr_truncated,
            exit_code=self.exit_code,
            signal=self.signal,
            payload=payload,
        )


class ProcessRunner:
    """Runs processes in a sandbox; one instance serves many concurrent runs."""

    def __init__(self, mode: SandboxMode | str | None = None, *, use_cgroup: bool = True) -> None:
        """Use the given sandbox mode, or the best available one when None."""
        self._sandbox = Sandbox(mode)
        self._cgroups = PidsCgroups.detect() if use_cgroup else None

    @property
    def sandbox_name(self) -> str:
        """ "bwrap" or "subreaper"."""
        return self._sandbox.sandbox_name

    @property
    def process_limit(self) -> str:
        """How the process count is capped: "cgroup" (pids controller) or "rlimit"."""
        return "cgroup" if self._cgroups else "rlimit"

    async def run(
        self, spec: ProcessSpec, cancelled: asyncio.Event | None = None
    ) -> ProcessOutcome:
        """Run ``spec`` to its end or its limits; the tree is dead when this returns or raises."""
        if self._sandbox.mode is not SandboxMode.BWRAP and not all(m.writable for m in spec.mounts):
            # Only bwrap's read-only bind can hold a read-only root against a process.
            raise PolicyDenied("read-only roots need the bwrap sandbox to run commands or Python")
        cgroup = self._cgroups.create(spec.limits.processes) if self._cgroups else None
        private_tmp = None
        env = dict(spec.env)
        if self._sandbox.mode is SandboxMode.BWRAP:
            env["TMPDIR"] = "/tmp"  # noqa: S108 - a tmpfs private to the sandbox
        else:
            private_tmp = tempfile.mkdtemp(prefix="clawq-run-")
            env["TMPDIR"] = private_tmp
        try:
            return await self._spawn_and_watch(
                spec, env, cgroup.path if cgroup else None, cancelled
            )
        finally:
            if cgroup:
                await asyncio.to_thread(cgroup.destroy)
            if private_tmp:
                await asyncio.to_thread(shutil.rmtree, private_tmp, True)

    async def _spawn_and_watch(
        self,
        spec: ProcessSpec,
        env: dict[str, str],
        cgroup: str | None,
        cancelled: asyncio.Event | None,
    ) -> ProcessOutcome:
        argv = self._sandbox.launch_argv(
            list(spec.argv),
            cwd=str(spec.cwd),
            mounts=list(spec.mounts),
            limits=_rlimits(spec.limits),
            cgroup=cgroup,
        )
        proc, ends = await _spawn(argv, spec, env)
        watch = _Watch(proc, spec, self._sandbox, cancelled, ends)
        try:
            return await watch.run()
        except BaseException:
            await asyncio.shield(_kill_tree(proc, self._sandbox.mode))
            raise
        finally:
            watch.close()


async def _spawn(
    argv: list[str], spec: ProcessSpec, env: dict[str, str]
) -> tuple[asyncio.subprocess.Process, tuple[int, int, int]]:
    """The started process and our ends of its stdin, stdout and stderr pipes."""
    # Our own pipes, not asyncio's: Process.wait() must not depend on every pipe
    # closing, or a descendant holding stdout open could stall the kill path.
    pipes = [os.pipe() for _ in range(3)]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=pipes[0][0],
            stdout=pipes[1][1],
            stderr=pipes[2][1],
            cwd=spec.cwd,
            env=env,
            start_new_session=True,
        )
    except BaseException:
        for fd in (fd for pair in pipes for fd in pair):
            os.close(fd)
        raise
    for fd in (pipes[0][0], pipes[1][1], pipes[2][1]):
        os.close(fd)
    return proc, (pipes[0][1], pipes[1][0], pipes[2][0])


def _rlimits(limits: Limits) -> RLimits:
    return RLimits(
        cpu_s=limits.cpu_s,
        memory_bytes=limits.memory_bytes,
        processes=limits.processes,
        file_size_bytes=limits.file_size_bytes,
        open_files=limits.open_files,
    )


class _Watch:
    """Feeds, reads and times one running process."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        spec: ProcessSpec,
        sandbox: Sandbox,
        cancelled: asyncio.Event | None,
        fds: tuple[int, int, int],
    ) -> None:
        self.proc = proc
        self.spec = spec
        self.sandbox = sandbox
        self.cancelled = cancelled or asyncio.Event()
        self.activity = [asyncio.get_running_loop().time()]
        self.overflow = asyncio.Event()
        self.feed = Feed(fds[0], spec.stdin)
        self.out = Capture(fds[1], spec.max_output_bytes, self.activity, self.overflow)
        self.err = Capture(fds[2], spec.max_output_bytes, self.activity, self.overflow)

    async def run(self) -> ProcessOutcome:
        reason = await self._wait()
        if reason:
            await _kill_tree(self.proc, self.sandbox.mode)
        await self.proc.wait()
        # The tree is gone, so EOF is near; the bound covers a subreaper-mode escapee that
        # killed its supervisor and still holds a pipe (the cgroup kill then finds it).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_DRAIN_S):
                await self.out.done.wait()
                await self.err.done.wait()
        return self._outcome(reason)

    def close(self) -> None:
        """Close every pipe end still open."""
        self.feed.close()
        self.out.close()
        self.err.close()

    async def _wait(self) -> str | None:
        """Wait for the exit or a limit; the name of the limit that was hit, if any."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.spec.timeout_s
        idle = self.spec.idle_timeout_s
        waiters = {
            asyncio.create_task(self.proc.wait()),
            asyncio.create_task(self.cancelled.wait()),
            asyncio.create_task(self.overflow.wait()),
        }
        try:
            while self.proc.returncode is None:
                now = loop.time()
                if now >= deadline:
                    return "timeout"
                if idle > 0 and now >= self.activity[0] + idle:
                    return "idle"
                if self.overflow.is_set() or self.cancelled.is_set():
                    return "overflow" if self.overflow.is_set() else "cancelled"
                until = deadline if idle <= 0 else min(deadline, self.activity[0] + idle)
                await asyncio.wait(
                    waiters, timeout=until - now, return_when=asyncio.FIRST_COMPLETED
                )
            return None
        finally:
            for task in waiters:
                task.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    def _outcome(self, reason: str | None) -> ProcessOutcome:
        code = self.proc.returncode
        assert code is not None  # noqa: S101 - the process was awaited
        exit_code: int | None = code
        signum = 0
        if reason is not None:
            exit_code, signum = None, int(signal.SIGKILL)
        elif code < 0:
            exit_code, signum = None, -code
        elif (
            self.sandbox.mode is SandboxMode.BWRAP
            and _SHELL_SIGNAL < code <= _SHELL_SIGNAL + _MAX_SIGNAL
        ):
            exit_code, signum = None, code - _SHELL_SIGNAL
        return ProcessOutcome(
            stdout=bytes(self.out.data),
            stdout_truncated=self.out.truncated,
            stderr=bytes(self.err.data),
            stderr_truncated=self.err.truncated,
            exit_code=exit_code,
            signal=signum,
            timed_out=reason == "timeout",
            idle_timed_out=reason == "idle",
            sandbox=self.sandbox.sandbox_name,
        )


async def _kill_tree(proc: asyncio.subprocess.Process, mode: SandboxMode) -> None:
    """Kill everything the process started; return once the launched process is reaped."""
    if proc.returncode is not None:
        return
    if mode is SandboxMode.SUBREAPER:
        # The supervisor kills and reaps the tree on SIGTERM; SIGKILL would orphan it.
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), _KILL_GRACE_S)
    # bwrap: killing the process group kills bwrap; its PID namespace dies with it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    await proc.wait()
