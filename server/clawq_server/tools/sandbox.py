"""OS sandboxes for commands: bubblewrap or a child-subreaper supervisor, and pids cgroups.

Every command starts through supervisor.py (``python -I -S supervisor.py CONFIG``), which
sets the rlimits, joins the run's pids cgroup, arranges to die with the server, and then

- mode "bwrap": execs ``bwrap``; the command lives in a fresh PID namespace whose init is
  bwrap itself. When that init dies the kernel kills everything inside, so killing bwrap's
  process group kills the whole tree, ``setsid()`` escapees included. The sandbox has no
  network, a read-only /usr and a few /etc files, a private /tmp, no capabilities, and
  sees only the principal's roots (read-only roots bound read-only).
- mode "subreaper": stays as a supervisor that is a child subreaper; it starts the command
  in a new session and, once the command ends or it is told to stop, kills every
  descendant it finds until none is left. There is no filesystem or network isolation:
  only the argument policy and rlimits hold.

A pids cgroup (where a writable cgroup v1 pids hierarchy exists) caps the process count
even for root, for whom RLIMIT_NPROC is not enforced, and lists every process of a run
so the runner can kill stragglers in either mode.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path

FIXED_PATH = "/usr/local/bin:/usr/bin:/bin"
_SUPERVISOR = str(Path(__file__).with_name("supervisor.py"))
# Read-only system files the tools inside bwrap need; /etc/shadow and friends stay out.
_ETC_FILES = (
    "ld.so.cache",
    "ld.so.conf",
    "passwd",
    "group",
    "nsswitch.conf",
    "localtime",
    "magic",
    "mime.types",
)


class SandboxMode(StrEnum):
    """How a command's process tree is contained."""

    BWRAP = "bwrap"
    SUBREAPER = "subreaper"


@dataclass(frozen=True, slots=True)
class RLimits:
    """The rlimits set in the child before the command starts (plain numbers, JSON-able)."""

    cpu_s: int
    memory_bytes: int
    processes: int
    file_size_bytes: int
    open_files: int


@dataclass(frozen=True, slots=True)
class Mount:
    """A host directory made visible to the command at the same path.

    identity, when known, is the (device, inode) the path must still lead to when bwrap
    binds it (see Root): checked by the supervisor just before bwrap starts.
    """

    path: str
    writable: bool
    identity: tuple[int, int] | None = None


@cache
def bwrap_works(bwrap: str) -> bool:
    """True when ``bwrap`` can build the sandbox this module uses (probed once per path)."""
    argv = [bwrap, *_bwrap_base(), "--chdir", "/", "/bin/true"]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=10, check=False, env={})
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


class Sandbox:
    """Builds the argv that starts a command in the chosen sandbox."""

    def __init__(self, mode: SandboxMode | str | None = None, *, bwrap: str | None = None) -> None:
        """Use ``mode``, or detect the best available one when it is None."""
        self._bwrap = bwrap or _which_bwrap()
        self.mode = SandboxMode(mode) if mode is not None else self.detect(self._bwrap)
        if self.mode is SandboxMode.BWRAP and not (self._bwrap and bwrap_works(self._bwrap)):
            raise RuntimeError("bubblewrap sandbox requested but bwrap is missing or fails")

    @staticmethod
    def detect(bwrap: str | None = None) -> SandboxMode:
        """The best available mode: bwrap when installed and working, else subreaper."""
        path = bwrap or _which_bwrap()
        return SandboxMode.BWRAP if path and bwrap_works(path) else SandboxMode.SUBREAPER

    @property
    def sandbox_name(self) -> str:
        """The mode's name, for the server's startup line and results."""
        return self.mode.value

    def launch_argv(
        self,
        argv: list[str],
        *,
        cwd: str,
        mounts: list[Mount],
        limits: RLimits,
        cgroup: str | None,
    ) -> list[str]:
        """The argv that runs ``argv`` in the sandbox, through the supervisor script."""
        inner = argv
        if self.mode is SandboxMode.BWRAP:
            inner = [
                str(self._bwrap),
                *_bwrap_base(),
                *_bwrap_mounts(mounts),
                "--chdir",
                cwd,
                "--",
                *argv,
            ]
        config = {
            "mode": self.mode.value,
            "argv": inner,
            "identities": [[m.path, *m.identity] for m in mounts if m.identity],
            "limits": asdict(limits),
            "cgroup": cgroup,
            "parent": os.getpid(),
        }
        return [sys.executable, "-I", "-S", _SUPERVISOR, json.dumps(config)]


def _which_bwrap() -> str | None:
    for folder in FIXED_PATH.split(":"):
        candidate = Path(folder) / "bwrap"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _bwrap_base() -> list[str]:
    # No user namespace games: run as the caller, but with every capability dropped so a
    # root server's commands cannot mount, ptrace or change ids inside the sandbox.
    base = [
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--ro-bind",
        "/usr",
        "/usr",
        "--proc",
        "/proc",
        # The kernel lets uid 0 write these whatever its capabilities: a root server's
        # command could set kernel.core_pattern (run as root on the host) or reboot it.
        "--ro-bind-try",
        "/proc/sys",
        "/proc/sys",
        "--ro-bind-try",
        "/proc/sysrq-trigger",
        "/proc/sysrq-trigger",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",  # noqa: S108 - a tmpfs private to the sandbox
    ]
    for name in ("bin", "sbin", "lib", "lib32", "lib64"):
        link = Path("/") / name
        if link.is_symlink():
            base += ["--symlink", os.readlink(link), str(link)]
        elif link.is_dir():
            base += ["--ro-bind", str(link), str(link)]
    for name in _ETC_FILES:
        if Path("/etc", name).exists():
            base += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    return base


def _bwrap_mounts(mounts: list[Mount]) -> list[str]:
    # Outer directories first, so a read-only root nested in a writable one stays read-only.
    out: list[str] = []
    for mount in sorted(mounts, key=lambda m: len(Path(m.path).parts)):
        out += ["--bind" if mount.writable else "--ro-bind", mount.path, mount.path]
    return out


class PidsCgroups:
    """Where per-run pids cgroups can be made (cgroup v1 pids controller, writable)."""

    def __init__(self, base: Path) -> None:
        """Make cgroups under ``base``, an existing writable pids cgroup directory."""
        self._base = base
        self._count = 0

    @staticmethod
    def detect() -> PidsCgroups | None:
        """A factory under this process's own pids cgroup, or None when none is writable."""
        try:
            lines = Path("/proc/self/cgroup").read_text().splitlines()
        except OSError:
            return None
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if "pids" in controllers.split(","):
                base = Path("/sys/fs/cgroup/pids", path.lstrip("/"))
                if os.access(base / "cgroup.procs", os.W_OK):
                    return PidsCgroups(base)
        return None

    def create(self, max_pids: int) -> PidsCgroup:
        """A fresh cgroup allowing at most ``max_pids`` tasks."""
        self._count += 1
        path = self._base / f"clawq-{os.getpid()}-{self._count}"
        path.mkdir()
        (path / "pids.max").write_text(str(max_pids))
        return PidsCgroup(str(path))


@dataclass(frozen=True, slots=True)
class PidsCgroup:
    """One run's cgroup: caps the process count even for root, and lists every member."""

    path: str

    def destroy(self) -> None:
        """SIGKILL whatever is left inside, then remove the cgroup (blocking, bounded)."""
        procs = Path(self.path, "cgroup.procs")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                pids = [int(p) for p in procs.read_text().split()]
            except OSError:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            try:
                os.rmdir(self.path)
                return
            except OSError:
                time.sleep(0.01)
