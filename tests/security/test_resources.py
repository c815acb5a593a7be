"""Resource exhaustion and escape attempts against the process runner, in both sandbox modes."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from clawq_server.errors import InvalidArgument
from clawq_server.policy.principal import Limits
from clawq_server.tools.command import ExecuteCommandTool
from clawq_server.tools.process import ProcessRunner
from clawq_server.tools.sandbox import Mount, PidsCgroups
from tests.security.helpers_proc import (
    MODES,
    PROC_SECRET,
    ProcWorkspace,
    needs_bwrap,
    survivors,
    wait_no_survivors,
)

pytest_plugins = ["tests.security.proc_fixtures"]

PY = "/usr/bin/python3"
CGROUP = PidsCgroups.detect() is not None
# Without a pids cgroup, RLIMIT_NPROC does not bind root, so a fork bomb in subreaper mode
# would be limited only by the timeout: run that case where something else contains it.
FORK_BOMB_MODES = [
    MODES[0],
    pytest.param(
        "subreaper",
        marks=pytest.mark.skipif(
            not CGROUP and os.geteuid() == 0, reason="no pids cgroup and running as root"
        ),
    ),
]


async def test_exit_status_is_reported(proc_ws: ProcWorkspace, runner: ProcessRunner) -> None:
    """A non-zero exit is a normal outcome with its code, stdout and stderr."""
    out = await runner.run(proc_ws.spec("/bin/sh", "-c", "echo out; echo err >&2; exit 3"))
    assert (out.exit_code, out.signal, out.stdout, out.stderr) == (3, 0, b"out\n", b"err\n")
    assert not out.timed_out
    assert out.sandbox == runner.sandbox_name


async def test_signal_death_is_reported(proc_ws: ProcWorkspace, runner: ProcessRunner) -> None:
    """A process ended by a signal reports exit_code None and the signal number."""
    out = await runner.run(proc_ws.spec("/bin/sh", "-c", "kill -TERM $$"))
    assert (out.exit_code, out.signal) == (None, signal.SIGTERM)


@pytest.mark.parametrize("mode", FORK_BOMB_MODES)
async def test_fork_bomb_is_contained(proc_ws: ProcWorkspace, mode: str) -> None:
    """A fork bomb is capped and killed at its timeout, and none of its processes survive."""
    runner = ProcessRunner(mode)
    limits = Limits(processes=32)
    # Each level waits on its pipeline, so the bomb cannot finish early: it ends only by
    # hitting the process cap (forks fail) or being killed at its timeout.
    bomb = "f() { f | f; }; f"
    out = await runner.run(proc_ws.spec("/bin/sh", "-c", bomb, limits=limits, timeout_s=1.5))
    # Capped by the pids cgroup (forks fail) or, without one, killed at the timeout.
    assert out.timed_out or b"fork" in out.stderr.lower()
    assert wait_no_survivors(proc_ws.marker) == []


async def test_memory_balloon_fails(proc_ws: ProcWorkspace, runner: ProcessRunner) -> None:
    """RLIMIT_AS stops a process that tries to allocate far beyond its memory limit."""
    limits = Limits(memory_bytes=256 << 20)
    code = "b = bytearray(2 << 30); print('allocated')"
    out = await runner.run(proc_ws.spec(PY, "-I", "-S", "-c", code, limits=limits))
    assert out.exit_code != 0
    assert b"allocated" not in out.stdout
    assert b"MemoryError" in out.stderr


async def test_endless_output_is_capped(proc_ws: ProcWorkspace, runner: ProcessRunner) -> None:
    """Output past the cap kills the tree and keeps exactly the cap, marked truncated."""
    out = await runner.run(proc_ws.spec("/usr/bin/yes", max_output_bytes=4096))
    assert out.stdout_truncated
    assert len(out.stdout) == 4096
    assert (out.exit_code, out.signal) == (None, signal.SIGKILL)


async def test_endless_stderr_is_capped(proc_ws: ProcWorkspace, runner: ProcessRunner) -> None:
    """stderr has its own cap and truncation flag."""
    out = await runner.run(proc_ws.spec("/bin/sh", "-c", "yes >&2", max_output_bytes=1000))
    assert out.stderr_truncated
    assert len(out.stderr) == 1000
    assert not out.stdout_truncated


async def test_silent_hang_hits_idle_timeout(proc_ws: ProcWorkspace, runner: ProcessRunner) -> None:
    """A process that writes nothing for idle_timeout_s is killed and reported idle."""
    out = await runner.run(proc_ws.spec("/bin/sleep", "1000", idle_timeout_s=0.3))
    assert out.idle_timed_out
    assert not out.timed_out
    assert out.signal == signal.SIGKILL


async def test_chatty_process_hits_wall_timeout(
    proc_ws: ProcWorkspace, runner: ProcessRunner
) -> None:
    """Steady output keeps the idle timer alive but not the wall timeout."""
    loop = "while :; do echo tick; sleep 0.05; done"
    spec = proc_ws.spec("/bin/sh", "-c", loop, timeout_s=0.6, idle_timeout_s=5)
    out = await runner.run(spec)
    assert out.timed_out
    assert not out.idle_timed_out
    assert out.stdout.startswith(b"tick\n")


@pytest.mark.parametrize("use_cgroup", [True, False], ids=["cgroup", "no-cgroup"])
async def test_setsid_escapee_dies(proc_ws: ProcWorkspace, mode: str, use_cgroup: bool) -> None:
    """A child that calls setsid() and outlives its parent is killed when the command ends."""
    runner = ProcessRunner(mode, use_cgroup=use_cgroup)
    out = await runner.run(proc_ws.spec("/bin/sh", "-c", "setsid sleep 1000 & echo started"))
    assert out.stdout == b"started\n"
    assert out.exit_code == 0
    assert wait_no_survivors(proc_ws.marker) == []


@pytest.mark.parametrize("use_cgroup", [True, False], ids=["cgroup", "no-cgroup"])
async def test_double_fork_daemon_dies(proc_ws: ProcWorkspace, mode: str, use_cgroup: bool) -> None:
    """A classic daemon (fork, setsid, fork, parent exits) does not survive the call."""
    code = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(1000)\n"
        "    os._exit(0)\n"
        "print('parent done')\n"
    )
    runner = ProcessRunner(mode, use_cgroup=use_cgroup)
    out = await runner.run(proc_ws.spec(PY, "-I", "-S", "-c", code))
    assert out.stdout == b"parent done\n"
    assert wait_no_survivors(proc_ws.marker) == []


async def test_huge_file_write_is_stopped(proc_ws: ProcWorkspace, runner: ProcessRunner) -> None:
    """RLIMIT_FSIZE stops a write past file_size_bytes; the file never grows beyond it."""
    limits = Limits(file_size_bytes=1 << 20)
    spec = proc_ws.spec("/bin/sh", "-c", "head -c 8000000 /dev/zero > big", limits=limits)
    out = await runner.run(spec)
    assert out.exit_code != 0
    assert (proc_ws.root / "big").stat().st_size <= 1 << 20


async def test_cpu_limit_stops_a_busy_loop(proc_ws: ProcWorkspace, runner: ProcessRunner) -> None:
    """RLIMIT_CPU ends a busy loop with SIGXCPU (or SIGKILL at the hard limit)."""
    spec = proc_ws.spec(PY, "-I", "-S", "-c", "while True: pass", limits=Limits(cpu_s=1))
    out = await runner.run(spec)
    assert out.signal in (signal.SIGXCPU, signal.SIGKILL)
    assert not out.timed_out


async def test_rlimits_reach_the_command(proc_ws: ProcWorkspace, runner: ProcessRunner) -> None:
    """Open files and core size are limited inside the command."""
    spec = proc_ws.spec("/bin/sh", "-c", "ulimit -n; ulimit -c", limits=Limits(open_files=77))
    out = await runner.run(spec)
    assert out.stdout.split() == [b"77", b"0"]


async def test_cancel_event_kills_the_tree(proc_ws: ProcWorkspace, runner: ProcessRunner) -> None:
    """Setting the cancel event kills the command and its children promptly."""
    cancelled = asyncio.Event()
    spec = proc_ws.spec("/bin/sh", "-c", "sleep 1000 & sleep 1000; wait")
    task = asyncio.create_task(runner.run(spec, cancelled))
    await _until(lambda: len(survivors(proc_ws.marker)) >= 2)
    cancelled.set()
    out = await asyncio.wait_for(task, 10)
    assert out.signal == signal.SIGKILL
    assert not out.timed_out


async def test_task_cancellation_kills_the_tree(
    proc_ws: ProcWorkspace, runner: ProcessRunner
) -> None:
    """Cancelling the awaiting task kills the tree and re-raises CancelledError."""
    task = asyncio.create_task(runner.run(proc_ws.spec("/bin/sh", "-c", "sleep 1000 & wait")))
    await _until(lambda: len(survivors(proc_ws.marker)) >= 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert wait_no_survivors(proc_ws.marker) == []


async def test_stdin_is_fed_and_closed(proc_ws: ProcWorkspace, runner: ProcessRunner) -> None:
    """stdin reaches the command and is closed, so a reader sees EOF."""
    out = await runner.run(proc_ws.spec("/bin/cat", stdin=b"hello\n"))
    assert out.stdout == b"hello\n"
    assert out.exit_code == 0


async def test_unread_stdin_does_not_hang(proc_ws: ProcWorkspace, runner: ProcessRunner) -> None:
    """A command that never reads a large stdin still finishes."""
    out = await runner.run(proc_ws.spec("/bin/true", stdin=b"x" * (1 << 20)))
    assert out.exit_code == 0


async def test_stdin_over_cap_is_refused(proc_ws: ProcWorkspace) -> None:
    """stdin larger than max_stdin_bytes is an invalid argument, and nothing runs."""
    tool = ExecuteCommandTool(ProcessRunner())
    principal = proc_ws.principal(limits=Limits(max_stdin_bytes=10))
    with pytest.raises(InvalidArgument) as caught:
        await tool.run({"argv": ["cat"], "stdin": "x" * 11}, proc_ws.ctx(principal))
    assert caught.value.violations[0].field == "args.stdin"


@needs_bwrap
async def test_sandbox_hides_files_outside_the_roots(proc_ws: ProcWorkspace) -> None:
    """Under bwrap a command cannot even see a secret outside the roots, or /etc/shadow."""
    runner = ProcessRunner("bwrap")
    target = proc_ws.outside / "secret.txt"
    out = await runner.run(proc_ws.spec("/bin/cat", str(target), "/etc/shadow"))
    assert out.exit_code != 0
    assert PROC_SECRET.encode() not in out.stdout


@needs_bwrap
async def test_sandbox_system_is_read_only(proc_ws: ProcWorkspace) -> None:
    """Under bwrap /usr cannot be written, and outside files are unchanged."""
    before = proc_ws.outside_snapshot()
    runner = ProcessRunner("bwrap")
    script = f"touch /usr/pwned; echo x > {proc_ws.outside}/secret.txt; touch ok"
    out = await runner.run(proc_ws.spec("/bin/sh", "-c", script))
    assert not await asyncio.to_thread(Path("/usr/pwned").exists)
    assert (proc_ws.root / "ok").exists()
    assert proc_ws.outside_snapshot() == before
    assert out.exit_code == 0


@needs_bwrap
async def test_sandbox_read_only_root_refuses_writes(proc_ws: ProcWorkspace) -> None:
    """A read-only root is bound read-only: writes fail even though the path is visible."""
    runner = ProcessRunner("bwrap")
    spec = proc_ws.spec("/bin/sh", "-c", "touch x", mounts=(Mount(str(proc_ws.root), False),))
    out = await runner.run(spec)
    assert out.exit_code != 0
    assert not (proc_ws.root / "x").exists()


@needs_bwrap
async def test_sandbox_drops_capabilities(proc_ws: ProcWorkspace) -> None:
    """Commands under bwrap hold no capabilities, even when the server runs as root."""
    out = await ProcessRunner("bwrap").run(proc_ws.spec("/bin/grep", "CapEff", "/proc/self/status"))
    assert out.stdout.split()[-1] == b"0000000000000000"


async def _until(condition: object, within: float = 10.0) -> None:
    """Wait (polling) until condition() is true, failing at the deadline."""
    assert callable(condition)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


PROC_WRITES = """
for name in ("/proc/sys/kernel/core_pattern", "/proc/sys/vm/stat_interval", "/proc/sysrq-trigger"):
    try:
        with open(name, "r+b" if "sys/" in name else "wb") as f:
            if "sys/" in name:
                f.write(f.read())  # the same value back: nothing changes even on a failure
        print(name, "writable")
    except OSError as error:
        print(name, "refused", error.errno)
"""


@needs_bwrap
async def test_kernel_settings_are_read_only_in_the_sandbox(proc_ws: ProcWorkspace) -> None:
    """Under bubblewrap, /proc/sys and /proc/sysrq-trigger cannot be written, even by a
    command of a server running as root."""
    out = await ProcessRunner("bwrap").run(proc_ws.spec(PY, "-I", "-S", "-c", PROC_WRITES))
    lines = out.stdout.decode().splitlines()
    assert len(lines) == 3, out.stderr
    assert all(" refused " in line for line in lines), lines


@needs_bwrap
async def test_the_supervisor_refuses_a_mount_that_leads_elsewhere(proc_ws: ProcWorkspace) -> None:
    """A root swapped after the server's check (by another run) is caught once more just
    before bubblewrap binds it: nothing runs."""
    elsewhere = os.stat(proc_ws.outside)
    moved = Mount(str(proc_ws.root), True, (elsewhere.st_dev, elsewhere.st_ino))
    marker = proc_ws.root / "ran"
    spec = proc_ws.spec("/bin/sh", "-c", f"touch {marker}", mounts=(moved,))
    out = await ProcessRunner("bwrap").run(spec)
    assert out.exit_code == 126
    assert b"no longer the directory" in out.stderr
    assert not marker.exists()
