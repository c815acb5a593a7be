"""Directory watches (Linux inotify through ctypes) that turn every change into a new generation.

Each watched directory carries a generation counter, and so does each child name that some
cached result depends on. An event bumps the directory's counter and its name's; an event
about the directory itself (deleted, moved, unmounted, re-permissioned) bumps everything of
that directory; a queue overflow bumps the epoch, which outdates every snapshot at once.

A snapshot taken before a result is computed stays equal to ``versions(deps)`` only while
nothing the result depends on has changed. ``drain()`` reads every queued event without
blocking: the kernel queues an event inside the syscall that made the change, so a change
completed before ``drain()`` is always counted.

ctypes rather than the ``inotify_simple`` package: three libc calls and a struct decode are
less code than a dependency, and the descriptor stays under this module's control.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_UNMOUNT = 0x2000
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x01000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

WATCH_MASK = (
    IN_MODIFY
    | IN_ATTRIB
    | IN_CLOSE_WRITE
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_MOVE_SELF
)
_SELF_EVENTS = IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT | IN_IGNORED
_EVENT = struct.Struct("iIII")
_READ_SIZE = 1 << 16

Dep = tuple["DirState", str | None]  # a whole directory (None) or one name inside it


class WatchUnavailable(OSError):
    """inotify cannot watch what a result depends on (no inotify, or out of watches)."""


@dataclass(eq=False, slots=True)
class DirState:
    """One watched directory: its generation, the generations of names depended on, refs."""

    wd: int
    gen: int = 0
    refs: int = 0
    names: dict[str, list[int]] = field(default_factory=dict)  # name -> [gen, refs]

    def version(self, name: str | None) -> int:
        """The generation a dependency on name (None: the whole directory) has now."""
        if name is None:
            return self.gen
        slot = self.names.get(name)
        return slot[0] if slot is not None else -1

    def bump(self, name: str | None) -> None:
        """Count one change: of the named child, or (None) of the directory itself."""
        self.gen += 1
        if name is None:
            for every in self.names.values():
                every[0] += 1
            return
        slot = self.names.get(name)
        if slot is not None:
            slot[0] += 1


class _Libc:
    """The three inotify calls of libc."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.init1 = libc.inotify_init1
        self.init1.argtypes = [ctypes.c_int]
        self.init1.restype = ctypes.c_int
        self.add_watch = libc.inotify_add_watch
        self.add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self.add_watch.restype = ctypes.c_int
        self.rm_watch = libc.inotify_rm_watch
        self.rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
        self.rm_watch.restype = ctypes.c_int


class Watcher:
    """Watches directories by descriptor and keeps their generations. Thread-safe."""

    def __init__(self) -> None:
        try:
            self._libc = _Libc()
        except (OSError, AttributeError) as error:
            raise WatchUnavailable(errno.ENOSYS, "inotify is not available") from error
        fd = self._libc.init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            raise WatchUnavailable(code, f"inotify_init1: {os.strerror(code)}")
        self._fd = fd
        self._lock = threading.Lock()
        self._dirs: dict[int, DirState] = {}
        self.epoch = 0  # bumped on queue overflow: every snapshot is outdated
        self.events = 0  # every change counted so far; unchanged means no snapshot moved

    @property
    def watched(self) -> int:
        """How many directories are watched now."""
        return len(self._dirs)

    def close(self) -> None:
        """Close the inotify descriptor (every watch goes with it)."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
                self._dirs.clear()

    def watch(self, dir_fd: int, name: str | None = None) -> tuple[Dep, int]:
        """Watch the open directory dir_fd (holding one reference) and depend on name in it.

        Returns the dependency and its version now. The watch is placed on the very inode the
        descriptor holds (through /proc/self/fd), so a path swapped meanwhile cannot redirect
        it. Read the directory only after this returns. Raises WatchUnavailable.
        """
        # Under the lock: the kernel hands back the wd of an existing watch, and a release
        # running between the add and the registration could remove that very watch (and
        # its IN_IGNORED be drained first), leaving this proof on a watch that never fires.
        with self._lock:
            path = f"/proc/self/fd/{dir_fd}".encode()
            wd = self._libc.add_watch(self._fd, path, WATCH_MASK)
            if wd < 0:
                code = ctypes.get_errno()
                raise WatchUnavailable(code, f"inotify_add_watch: {os.strerror(code)}")
            state = self._dirs.get(wd)
            if state is None:
                state = self._dirs[wd] = DirState(wd)
            state.refs += 1
            if name is not None:
                slot = state.names.setdefault(name, [0, 0])
                slot[1] += 1
            return (state, name), state.version(name)

    def mark(self) -> tuple[int, int]:
        """The event count and epoch now, after a drain: where a new proof starts."""
        with self._lock:
            self._drain_locked()
            return self.events, self.epoch

    def release(self, deps: Sequence[Dep]) -> None:
        """Give back the references of deps; directories nobody depends on are unwatched."""
        with self._lock:
            for state, name in deps:
                if name is not None:
                    slot = state.names.get(name)
                    if slot is not None:
                        slot[1] -= 1
                        if slot[1] <= 0:
                            del state.names[name]
                state.refs -= 1
                if state.refs <= 0 and self._dirs.get(state.wd) is state:
                    del self._dirs[state.wd]
                    if self._fd >= 0:
                        self._libc.rm_watch(self._fd, state.wd)

    def snapshot(self, deps: Sequence[Dep]) -> tuple[int, tuple[int, ...]]:
        """The event count and the versions (epoch, generations) of deps now, after a drain.

        While the event count stays the same, no version can have moved.
        """
        with self._lock:
            self._drain_locked()
            return self.events, (self.epoch, *(state.version(name) for state, name in deps))

    def drain(self) -> int:
        """Read every queued event without blocking; returns the running event count."""
        with self._lock:
            self._drain_locked()
            return self.events

    def _drain_locked(self) -> None:
        while self._fd >= 0:
            try:
                data = os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                return
            if not data:
                return
            self._apply(data)

    def _apply(self, data: bytes) -> None:
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            start = offset + _EVENT.size
            offset = start + length
            self.events += 1
            if mask & IN_Q_OVERFLOW:
                self.epoch += 1
                continue
            state = self._dirs.get(wd)
            if state is None:
                continue  # a watch removed meanwhile
            raw = data[start:offset].split(b"\0", 1)[0]
            if mask & _SELF_EVENTS or not raw:
                state.bump(None)
            else:
                state.bump(os.fsdecode(raw))
            if mask & IN_IGNORED:
                # The kernel dropped the watch (directory gone): nothing can be proven any more.
                self._dirs.pop(wd, None)
