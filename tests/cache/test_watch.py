"""The watcher's bookkeeping when proofs take and give back watches from several threads."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from clawq_server.cache.watch import Watcher


def test_a_release_racing_a_new_watch_of_a_directory_leaves_it_watched(tmp_path: Path) -> None:
    """The kernel answers a second watch of a directory with the first one's descriptor. If
    the first one's last release (and the drain of its IN_IGNORED) ran between that answer
    and its bookkeeping, the new proof would rest on a watch that no longer exists."""
    folder = tmp_path / "d"
    folder.mkdir()
    watcher = Watcher()
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        first, _ = watcher.watch(fd)  # another proof's watch of the same directory
        real_add = watcher._libc.add_watch
        released = threading.Event()

        def release_first() -> None:
            watcher.release([first])
            watcher.drain()
            released.set()

        def add_then_race(*args: Any) -> int:
            wd: int = real_add(*args)
            threading.Thread(target=release_first).start()
            released.wait(0.2)  # the release runs now unless the watcher keeps it out
            return wd

        watcher._libc.add_watch = add_then_race  # type: ignore[assignment]  # the real call inside
        dep, version = watcher.watch(fd)
        watcher._libc.add_watch = real_add
        assert released.wait(5.0)
        (folder / "new.txt").touch()
        _, versions = watcher.snapshot([dep])
        assert versions[1] != version
    finally:
        os.close(fd)
        watcher.close()
