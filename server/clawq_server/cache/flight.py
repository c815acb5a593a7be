"""Single flight: identical calls running at the same time in one process share one run."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from clawq_server.cache.fingerprint import Proof
from clawq_server.model import ToolResult


@dataclass(slots=True)
class Flight:
    """A run in progress that identical calls may join.

    proved turns true once the leader has tried to prove its inputs, just before the run
    starts; proof is then what it got (None: they could not be proven).
    """

    future: asyncio.Future[ToolResult]
    proof: Proof | None = None
    proved: bool = False
    followers: int = 0


Lead = Callable[[Flight], Awaitable[ToolResult]]


class Flights:
    """The runs in progress, by cache key."""

    def __init__(self) -> None:
        self._running: dict[str, Flight] = {}

    def followers(self) -> int:
        """Calls that joined a run still in progress (they are waiting on it, or were)."""
        return sum(flight.followers for flight in self._running.values())

    async def run(self, key: str, lead: Lead, joinable: Callable[[Flight], bool]) -> ToolResult:
        """Join the run of key when joinable says so, else lead a new one with lead."""
        flight = self._running.get(key)
        if flight is not None and joinable(flight):
            flight.followers += 1
            try:
                return await asyncio.shield(flight.future)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not flight.future.cancelled() or (task is not None and task.cancelling()):
                    raise
            return await self.run(key, lead, joinable)  # the leader was cancelled
        flight = Flight(asyncio.get_running_loop().create_future())
        flight.future.add_done_callback(_consume)
        self._running[key] = flight
        try:
            result = await lead(flight)
        except asyncio.CancelledError:
            flight.future.cancel()
            raise
        except BaseException as error:
            flight.future.set_exception(error)
            raise
        else:
            flight.future.set_result(result)
            return result
        finally:
            if self._running.get(key) is flight:
                del self._running[key]


def _consume(future: asyncio.Future[Any]) -> None:
    """Retrieve a failed run's exception so a run nobody joined logs no warning."""
    if not future.cancelled():
        future.exception()
