"""Blocking calls run on a few threads, with the event loop woken once per burst of results."""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
_Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]
_STOP = None
# As many as asyncio's default executor on this machine.
DEFAULT_THREADS = min(32, (os.cpu_count() or 1) + 4)


class Offload:
    """Runs blocking calls off the event loop, like asyncio.to_thread, but cheaper per call.

    asyncio.to_thread wakes the loop through its self-pipe once per call; a worker running
    a hundred small file calls at once pays that (a write, a read, a loop turn) for each.
    Here each thread takes one call at a time, so a slow call holds up no other, and
    the results that finish while the loop is busy are handed over in one wake-up.

    Threads start on first use and are daemons blocked on a queue when idle; close()
    waits for the calls still running, as interpreter exit does for asyncio's executor.
    """

    def __init__(self, threads: int = DEFAULT_THREADS, name: str = "clawq-offload") -> None:
        self._size = threads
        self._name = name
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], asyncio.Future[Any]] | None]
        self._calls = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._finished: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}

    async def run(self, fn: Callable[[], T]) -> T:
        """fn() on one of the threads; cancelling the await does not stop a call begun."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        if len(self._threads) < self._size:
            self._start_threads()
        self._calls.put((fn, future))
        return await future

    async def close(self) -> None:
        """Return once the calls handed over so far have run and the threads have exited.

        Later calls start new threads.
        """
        with self._lock:
            threads, self._threads = self._threads, []
        for _ in threads:
            self._calls.put(_STOP)  # behind every call already queued
        for thread in threads:
            await asyncio.to_thread(thread.join)

    def _start_threads(self) -> None:
        with self._lock:
            while len(self._threads) < self._size:
                name = f"{self._name}-{len(self._threads)}"
                thread = threading.Thread(target=self._serve, name=name, daemon=True)
                self._threads.append(thread)
                thread.start()

    def _serve(self) -> None:
        while (item := self._calls.get()) is not _STOP:
            fn, future = item
            try:
                outcome: _Outcome = (future, fn(), None)
            except BaseException as error:  # handed to the awaiting task, as to_thread does
                outcome = (future, None, error)
            self._hand_over(future.get_loop(), outcome)

    def _hand_over(self, loop: asyncio.AbstractEventLoop, outcome: _Outcome) -> None:
        with self._lock:
            if loop.is_closed():  # nobody is waiting any more; drop what was kept for it
                self._finished.pop(loop, None)
                return
            waiting = self._finished.setdefault(loop, [])
            waiting.append(outcome)
            if len(waiting) > 1:
                return  # a wake-up for this loop is already on its way
        try:
            loop.call_soon_threadsafe(self._settle, loop)
        except RuntimeError:  # closed since the check above
            with self._lock:
                self._finished.pop(loop, None)

    def _settle(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            outcomes = self._finished.pop(loop, [])
        for future, value, error in outcomes:
            if future.done():
                continue  # cancelled while the call ran
            if error is None:
                future.set_result(value)
            else:
                future.set_exception(error)
