"""Blocking calls run on a few threads, with the event loop woken once per burst of results."""

from __future__ import annotations

import asyncio
import contextvars
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

T = TypeVar("T")
_Call = tuple[contextvars.Context, Callable[[], Any], "asyncio.Future[Any]"]
_Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]
_STOP = None
# As many as asyncio's default executor on this machine.
DEFAULT_THREADS = min(32, (os.cpu_count() or 1) + 4)


class _Crew(NamedTuple):
    """One set of threads and the queue only they serve: close() ends exactly these."""

    calls: queue.SimpleQueue[_Call | None]
    threads: list[threading.Thread]


class Offload:
    """Runs blocking calls off the event loop, like asyncio.to_thread, but cheaper per call.

    asyncio.to_thread wakes the loop through its self-pipe once per call; a worker running
    a hundred small file calls at once pays that (a write, a read, a loop turn) for each.
    Here each thread takes one call at a time, so a slow call holds up no other, and
    the results that finish while the loop is busy are handed over in one wake-up.
    As with to_thread, the caller's context variables are seen by the call, and a call
    whose await was cancelled before it started does not run.

    Threads start on first use and are daemons blocked on a queue when idle; close()
    waits for the calls handed over so far, as interpreter exit does for asyncio's executor.
    """

    def __init__(self, threads: int = DEFAULT_THREADS, name: str = "clawq-offload") -> None:
        self._size = threads
        self._name = name
        self._lock = threading.Lock()
        self._crew: _Crew | None = None
        self._hired = 0
        self._finished: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}

    async def run(self, fn: Callable[[], T]) -> T:
        """fn() on one of the threads; cancelling the await does not stop a call begun."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        call: _Call = (contextvars.copy_context(), fn, future)
        with self._lock:  # so that a concurrent close() either waits for it or never sees it
            crew = self._crew or self._hire()
            crew.calls.put(call)
        return await future

    async def close(self) -> None:
        """Return once the calls handed over so far have run and their threads have exited.

        Calls made meanwhile or later go to a new set of threads.
        """
        with self._lock:
            crew, self._crew = self._crew, None
        if crew is None:
            return
        for _ in crew.threads:
            crew.calls.put(_STOP)  # behind every call already queued
        for thread in crew.threads:
            await asyncio.to_thread(thread.join)

    def _hire(self) -> _Crew:
        self._hired += 1
        crew = _Crew(queue.SimpleQueue(), [])
        for index in range(self._size):
            name = f"{self._name}-{self._hired}.{index}"
            thread = threading.Thread(target=self._serve, args=(crew.calls,), name=name)
            thread.daemon = True
            try:
                thread.start()
            except RuntimeError:  # out of threads: stop those started, fail this call
                for _ in crew.threads:
                    crew.calls.put(_STOP)
                raise
            crew.threads.append(thread)
        self._crew = crew
        return crew

    def _serve(self, calls: queue.SimpleQueue[_Call | None]) -> None:
        while (call := calls.get()) is not _STOP:
            context, fn, future = call
            if future.cancelled():
                continue  # given up before it started
            try:
                outcome: _Outcome = (future, context.run(fn), None)
            except StopIteration as error:  # an asyncio future refuses to carry one
                failure = RuntimeError("the offloaded call raised StopIteration")
                failure.__cause__ = error
                outcome = (future, None, failure)
            except BaseException as error:  # handed to the awaiting task, as to_thread does
                outcome = (future, None, error)
            self._hand_over(future.get_loop(), outcome)

    def _hand_over(self, loop: asyncio.AbstractEventLoop, outcome: _Outcome) -> None:
        with self._lock:
            waiting = self._finished.get(loop)
            if waiting is not None and not loop.is_closed():
                waiting.append(outcome)
                return  # a wake-up for this loop is already on its way
            # The first result of a burst: drop what is kept for loops that closed before
            # their wake-up ran (this one included).
            for closed in [kept for kept in self._finished if kept.is_closed()]:
                del self._finished[closed]
            if loop.is_closed():
                return  # nobody is waiting any more
            self._finished[loop] = [outcome]
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
