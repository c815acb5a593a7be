"""The per-command supervisor, run as a script: ``python -I -S supervisor.py CONFIG``.

It imports only the standard library. CONFIG (JSON, built by sandbox.Sandbox) holds the
argv, the rlimits, the pids cgroup and the mode. In mode "bwrap" it sets the limits and
execs bwrap. In mode "subreaper" it becomes a child subreaper, starts the command in a new
session, and when the command ends (or SIGTERM, SIGHUP or SIGINT arrives, or the server
dies) SIGKILLs every descendant it finds in /proc, reaping orphans re-parented to it,
until none is left. Its exit status mirrors the command's: a signal death is re-raised.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import sys
import time
from pathlib import Path
from types import FrameType

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def _set_limits(limits: dict[str, int]) -> None:
    pairs = (
        (resource.RLIMIT_CPU, limits["cpu_s"]),
        (resource.RLIMIT_AS, limits["memory_bytes"]),
        (resource.RLIMIT_NPROC, limits["processes"]),
        (resource.RLIMIT_FSIZE, limits["file_size_bytes"]),
        (resource.RLIMIT_NOFILE, limits["open_files"]),
        (resource.RLIMIT_CORE, 0),
    )
    for which, value in pairs:
        resource.setrlimit(which, (value, value))


def _descendants(root: int) -> list[int]:
    """Every live process below ``root``, from a /proc scan."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _reap() -> bool:
    """Reap every exited child; False once there are no children at all."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


def kill_descendants() -> None:
    """SIGKILL every descendant of this process until none remains (needs subreaper)."""
    me = os.getpid()
    while True:
        has_children = _reap()
        tree = _descendants(me)
        if not tree and not has_children:
            return
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.002)


def _on_terminate(signum: int, frame: FrameType | None) -> None:
    kill_descendants()
    os._exit(128 + signum)


def _supervise(argv: list[str], limits: dict[str, int]) -> None:
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, _on_terminate)
    # The child resets limits itself: the supervisor stays below RLIMIT_CPU/AS accounting.
    child = os.fork()
    if child == 0:
        try:
            for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                signal.signal(signum, signal.SIG_DFL)
            os.setsid()
            _set_limits(limits)
            os.execv(argv[0], argv)  # noqa: S606 - argv was checked by policy; no shell
        except OSError as exc:
            os.write(2, f"clawq: cannot run {argv[0]}: {exc.strerror}\n".encode())
        os._exit(127)
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == child:
            break
    kill_descendants()
    _mirror(status)


def _check_identities(identities: list[list[object]]) -> None:
    """Exit before bwrap binds a root whose path leads elsewhere than it was configured to:
    the server checked too, but another run may have swapped it since."""
    for path, device, inode in identities:
        try:
            found = os.stat(str(path))
        except OSError:
            continue  # bwrap fails on its own
        if (found.st_dev, found.st_ino) != (device, inode):
            os.write(2, f"clawq: root {path} is no longer the directory it was\n".encode())
            os._exit(126)


def _mirror(status: int) -> None:
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        # SIGKILL and SIGSTOP cannot be reset (and need not be).
        with contextlib.suppress(OSError, ValueError):
            signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        os._exit(128 + signum)
    os._exit(os.waitstatus_to_exitcode(status))


def main(raw: str) -> None:
    """Run one command as described by the JSON ``raw`` (see Sandbox.launch_argv)."""
    config = json.loads(raw)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if config["cgroup"]:
        Path(config["cgroup"], "cgroup.procs").write_text(str(os.getpid()))
    if config["mode"] == "bwrap":
        # bwrap inherits this: with the server gone, bwrap dies and takes its namespace.
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != config["parent"]:
            os._exit(125)
        _check_identities(config["identities"])
        _set_limits(config["limits"])
        os.execv(config["argv"][0], config["argv"])  # noqa: S606 - the bwrap argv we built
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != config["parent"]:
        os._exit(125)
    _supervise(config["argv"], config["limits"])


if __name__ == "__main__":
    main(sys.argv[1])
