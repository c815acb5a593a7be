"""Client: the blocking client, a thin wrapper running an AsyncClient on a private loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypeVar

from clawq._channel import Pem
from clawq.client import AsyncClient
from clawq.types import Ack, CacheStats, Call, ConfigReload, QueueStats, Result, Task, ToolInfo

_T = TypeVar("_T")


async def _next(iterator: AsyncIterator[_T]) -> _T:
    return await anext(iterator)


async def _close(iterator: AsyncIterator[Any]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


class Client:
    """The blocking client: ``with Client("127.0.0.1:50051") as c: c.execute(...)``.

    Takes the same arguments and raises the same exceptions as AsyncClient, whose
    methods it runs on an event loop in a background thread; its iterators (submit_stream,
    list_tasks, watch, ...) are ordinary iterators.
    """

    def __init__(
        self,
        target: str,
        token: str | None = None,
        *,
        tls: bool = False,
        ca: Pem | None = None,
        cert: Pem | None = None,
        key: Pem | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._async = AsyncClient(
            target, token, tls=tls, ca=ca, cert=cert, key=key, timeout=timeout
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="clawq-client", daemon=True
        )
        self._thread.start()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel and stop the background loop."""
        if self._loop.is_closed():
            return
        self._run(self._async.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except BaseException:
            # Ctrl-C in the caller's thread must not leave the RPC running on the loop.
            future.cancel()
            raise

    def _iterate(self, iterator: AsyncIterator[_T]) -> Iterator[_T]:
        try:
            while True:
                try:
                    item = self._run(_next(iterator))
                except StopAsyncIteration:
                    return
                yield item
        finally:
            if not self._loop.is_closed():
                self._run(_close(iterator))

    @property
    def target(self) -> str:
        """The server's "host:port"."""
        return self._async.target

    def execute(self, tool: str, /, *, timeout: float = 60.0, **args: Any) -> Result:
        """See AsyncClient.execute."""
        return self._run(self._async.execute(tool, timeout=timeout, **args))

    def execute_call(self, call: Call, *, timeout: float = 60.0) -> Result:
        """See AsyncClient.execute_call."""
        return self._run(self._async.execute_call(call, timeout=timeout))

    def submit(self, tool: str, /, **args_and_options: Any) -> str:
        """See AsyncClient.submit."""
        return self._run(self._async.submit(tool, **args_and_options))

    def submit_call(self, call: Call) -> str:
        """See AsyncClient.submit_call."""
        return self._run(self._async.submit_call(call))

    def submit_batch(self, calls: Sequence[Call]) -> list[str]:
        """See AsyncClient.submit_batch."""
        return self._run(self._async.submit_batch(calls))

    def submit_stream(self, calls: Iterable[Call], batch_size: int = 1000) -> Iterator[Ack]:
        """See AsyncClient.submit_stream; ``calls`` is read on the client's loop thread."""
        return self._iterate(self._async.submit_stream(calls, batch_size))

    def submit_many(self, calls: Iterable[Call], batch_size: int = 1000) -> Iterator[Ack]:
        """The same as submit_stream."""
        return self.submit_stream(calls, batch_size)

    def get(self, task_id: str) -> Task:
        """See AsyncClient.get."""
        return self._run(self._async.get(task_id))

    def get_many(self, task_ids: Sequence[str]) -> list[Task]:
        """See AsyncClient.get_many."""
        return self._run(self._async.get_many(task_ids))

    def wait(self, task_id: str, timeout: float = 60.0) -> Task:
        """See AsyncClient.wait."""
        return self._run(self._async.wait(task_id, timeout))

    def watch(self, task_ids: Sequence[str]) -> Iterator[Task]:
        """See AsyncClient.watch."""
        return self._iterate(self._async.watch(task_ids))

    def cancel(self, task_id: str) -> Task:
        """See AsyncClient.cancel."""
        return self._run(self._async.cancel(task_id))

    def list_tasks(
        self,
        state: str | Iterable[str] | None = None,
        tool: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        page_size: int = 100,
    ) -> Iterator[list[Task]]:
        """See AsyncClient.list_tasks: one page (a list of tasks) at a time."""
        pages = self._async.list_tasks(state, tool, created_after, created_before, page_size)
        return self._iterate(pages)

    def tools(self) -> list[ToolInfo]:
        """See AsyncClient.tools."""
        return self._run(self._async.tools())

    def queue_stats(self) -> QueueStats:
        """See AsyncClient.queue_stats."""
        return self._run(self._async.queue_stats())

    def dead_letters(self, page_size: int = 100) -> Iterator[list[Task]]:
        """See AsyncClient.dead_letters."""
        return self._iterate(self._async.dead_letters(page_size))

    def requeue_dead(self, ids: Sequence[str] | None = None) -> int:
        """See AsyncClient.requeue_dead."""
        return self._run(self._async.requeue_dead(ids))

    def cache_stats(self) -> CacheStats:
        """See AsyncClient.cache_stats."""
        return self._run(self._async.cache_stats())

    def cache_clear(self) -> int:
        """See AsyncClient.cache_clear."""
        return self._run(self._async.cache_clear())

    def cache_invalidate(self, path_prefix: str = "", pattern: str = "") -> int:
        """See AsyncClient.cache_invalidate."""
        return self._run(self._async.cache_invalidate(path_prefix, pattern))

    def reload_config(self) -> ConfigReload:
        """See AsyncClient.reload_config."""
        return self._run(self._async.reload_config())
