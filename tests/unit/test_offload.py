"""Offload: blocking calls off the loop, each result to its own awaiting task."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncIterator
from functools import partial

import pytest

from clawq_server.offload import Offload

WAIT_S = 10.0


@pytest.fixture
async def offload() -> AsyncIterator[Offload]:
    pool = Offload(threads=3, name="test-offload")
    yield pool
    await pool.close()


def _blocked_until(event: threading.Event, value: str) -> str:
    if not event.wait(WAIT_S):
        raise TimeoutError("never released")
    return value


class _Held:
    """A call that says when it has begun, then blocks until released."""

    def __init__(self, value: str = "") -> None:
        self.value = value
        self.started, self.release, self.finished = (threading.Event() for _ in range(3))

    def __call__(self) -> str:
        self.started.set()
        value = _blocked_until(self.release, self.value)
        self.finished.set()
        return value

    async def begun(self) -> None:
        assert await asyncio.to_thread(self.started.wait, WAIT_S)


async def test_each_call_gets_its_own_result(offload: Offload) -> None:
    results = await asyncio.gather(*(offload.run(partial(pow, i, 2)) for i in range(2000)))
    assert results == [i * i for i in range(2000)]


async def test_an_exception_reaches_the_caller(offload: Offload) -> None:
    def fail() -> None:
        raise FileNotFoundError("gone")

    with pytest.raises(FileNotFoundError, match="gone"):
        await offload.run(fail)
    assert await offload.run(lambda: "still serving") == "still serving"


async def test_runs_off_the_event_loop_thread(offload: Offload) -> None:
    assert await offload.run(threading.get_ident) != threading.get_ident()


async def test_a_slow_call_holds_up_no_other(offload: Offload) -> None:
    release = threading.Event()
    slow = asyncio.ensure_future(offload.run(lambda: _blocked_until(release, "slow")))
    try:
        assert await asyncio.wait_for(offload.run(lambda: "fast"), WAIT_S) == "fast"
        assert not slow.done()
    finally:
        release.set()
    assert await asyncio.wait_for(slow, WAIT_S) == "slow"


async def test_results_that_finish_while_the_loop_is_busy_all_arrive(offload: Offload) -> None:
    ran = threading.Semaphore(0)

    def count(i: int) -> int:
        ran.release()
        return i

    calls = [asyncio.ensure_future(offload.run(partial(count, i))) for i in range(200)]
    await asyncio.sleep(0)  # the calls are queued
    # Hold the loop until every call has run: their results pile up for one wake-up.
    for _ in calls:
        assert ran.acquire(timeout=WAIT_S)
    assert await asyncio.wait_for(asyncio.gather(*calls), WAIT_S) == list(range(200))


async def test_cancelled_await_lets_the_call_finish_and_the_pool_serve_on(offload: Offload) -> None:
    slow = _Held("late")
    waiting = asyncio.ensure_future(offload.run(slow))
    await slow.begun()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    slow.release.set()
    assert await asyncio.to_thread(slow.finished.wait, WAIT_S)
    assert await offload.run(lambda: "next") == "next"


def test_a_loop_that_closed_mid_call_does_not_break_the_threads() -> None:
    pool = Offload(threads=1, name="test-offload")
    orphan = _Held("orphan")

    async def abandon() -> None:
        call = asyncio.ensure_future(pool.run(orphan))
        await orphan.begun()
        call.cancel()

    async def serve_then_close() -> str:
        try:
            return await asyncio.wait_for(pool.run(lambda: "served"), WAIT_S)
        finally:
            await pool.close()

    asyncio.run(abandon())  # the loop closes while its call is still running
    orphan.release.set()
    # The one thread hands the orphan's result to a closed loop, then serves this one.
    assert asyncio.run(serve_then_close()) == "served"


async def test_close_waits_for_running_calls_and_stops_the_threads() -> None:
    pool = Offload(threads=2, name="test-offload-close")
    slow = _Held()
    call = asyncio.ensure_future(pool.run(slow))
    await slow.begun()
    call.cancel()  # as a worker's grace period does; the call itself runs on
    closing = asyncio.ensure_future(pool.close())
    threads = [t for t in threading.enumerate() if t.name.startswith("test-offload-close")]
    assert len(threads) == 2
    await asyncio.sleep(0.05)
    assert not closing.done()
    slow.release.set()
    await asyncio.wait_for(closing, WAIT_S)
    assert slow.finished.is_set()
    assert not any(thread.is_alive() for thread in threads)
    assert await pool.run(lambda: 2) == 2  # a later call starts new threads
    await pool.close()


async def test_a_call_raising_stop_iteration_fails_alone(offload: Offload) -> None:
    ran = threading.Semaphore(0)

    def count(i: int) -> int:
        ran.release()
        if i == 3:
            raise StopIteration  # asyncio futures refuse it: it must not sink the others
        return i

    calls = [asyncio.ensure_future(offload.run(partial(count, i))) for i in range(8)]
    await asyncio.sleep(0)
    for _ in calls:  # all finish before the loop runs again: one hand-over for all
        assert ran.acquire(timeout=WAIT_S)
    outcomes = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), WAIT_S)
    assert isinstance(outcomes[3], RuntimeError)
    assert [o for i, o in enumerate(outcomes) if i != 3] == [0, 1, 2, 4, 5, 6, 7]


async def test_a_call_cancelled_before_it_starts_never_runs() -> None:
    pool = Offload(threads=1, name="test-offload")
    release, ran = threading.Event(), []
    busy = asyncio.ensure_future(pool.run(lambda: _blocked_until(release, "busy")))
    queued = asyncio.ensure_future(pool.run(lambda: ran.append("ran")))
    await asyncio.sleep(0)
    queued.cancel()
    release.set()
    assert await asyncio.wait_for(busy, WAIT_S) == "busy"
    await pool.close()  # every call handed over has been taken off the queue by now
    assert queued.cancelled()
    assert ran == []


async def test_the_call_sees_the_callers_context_variables(offload: Offload) -> None:
    request: contextvars.ContextVar[str] = contextvars.ContextVar("request")
    request.set("req-42")
    assert await offload.run(request.get) == "req-42"


async def test_a_call_made_while_closing_runs_on_new_threads() -> None:
    pool = Offload(threads=2, name="test-offload-reopen")
    release = threading.Event()
    slow = asyncio.ensure_future(pool.run(lambda: _blocked_until(release, "slow")))
    await asyncio.sleep(0)
    closing = asyncio.ensure_future(pool.close())
    await asyncio.sleep(0)
    assert await asyncio.wait_for(pool.run(lambda: "meanwhile"), WAIT_S) == "meanwhile"
    release.set()
    await asyncio.wait_for(closing, WAIT_S)  # ends the first threads, which it waited for
    assert await slow == "slow"
    await asyncio.wait_for(pool.close(), WAIT_S)
    assert not [t for t in threading.enumerate() if t.name.startswith("test-offload-reopen")]
