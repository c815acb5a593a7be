"""Non-blocking pipe ends for the process runner: capped output capture and a stdin feeder."""

from __future__ import annotations

import asyncio
import os

READ_CHUNK = 65536


class Capture:
    """One output pipe read into a capped buffer; past the cap, read and discard to EOF."""

    def __init__(self, fd: int, cap: int, activity: list[float], overflow: asyncio.Event) -> None:
        self.data = bytearray()
        self.truncated = False
        self.done = asyncio.Event()
        self._fd = fd
        self._cap = cap
        self._activity = activity
        self._overflow = overflow
        self._loop = asyncio.get_running_loop()
        os.set_blocking(fd, False)
        self._loop.add_reader(fd, self._on_readable)

    def _on_readable(self) -> None:
        try:
            chunk = os.read(self._fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.close()
            return
        self._activity[0] = self._loop.time()
        room = self._cap - len(self.data)
        self.data += chunk[:room]
        if len(chunk) > room:
            self.truncated = True
            self._overflow.set()

    def close(self) -> None:
        if not self.done.is_set():
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self.done.set()


class Feed:
    """Writes stdin without blocking, then closes it; a reader that quits early is fine."""

    def __init__(self, fd: int, data: bytes) -> None:
        self._fd = fd
        self._data = memoryview(data)
        self._closed = False
        self._loop = asyncio.get_running_loop()
        if data:
            os.set_blocking(fd, False)
            self._loop.add_writer(fd, self._on_writable)
        else:
            self.close()

    def _on_writable(self) -> None:
        try:
            sent = os.write(self._fd, self._data[:READ_CHUNK])
        except BlockingIOError:
            return
        except OSError:
            sent = len(self._data)
        self._data = self._data[sent:]
        if not self._data:
            self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._loop.remove_writer(self._fd)
            os.close(self._fd)
