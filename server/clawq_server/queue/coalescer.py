"""Coalesces concurrent calls of one operation into batched calls (group commit)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# Runs a batch; returns one result per item, an Exception for an item that failed alone.
RunBatch = Callable[[list[Item]], Awaitable[Sequence[Result | Exception]]]


class Coalescer(Generic[Item, Result]):
    """Gathers the items of concurrent callers and runs them as one batch.

    The first caller starts a flush on the next turn of the event loop; everyone who
    calls before it runs joins that batch, and calls made while a batch is in flight
    form the next one. A lone caller pays one batch of one, so latency stays that of a
    single call while throughput under concurrency becomes that of batches.
    """

    def __init__(self, run: RunBatch[Item, Result], max_batch: int = 1000) -> None:
        self._run = run
        self._max_batch = max_batch
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def __call__(self, item: Item) -> Result:
        """The result of item, run in a batch with whatever else is pending."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="clawq-coalescer")
        return await future

    async def drain(self) -> None:
        """Wait until every pending item has run."""
        if self._flusher is not None:
            await asyncio.shield(self._flusher)

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                await self._settle(batch)
        finally:
            self._flusher = None

    async def _settle(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._run([item for item, _ in batch])
        except Exception as exc:  # every caller of the batch sees the failure
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:  # cancelled: nobody may wait for a batch that never ends
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # its caller gave up waiting
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
