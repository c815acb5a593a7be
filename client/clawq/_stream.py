"""Batching calls into SubmitStream requests and matching the acks back to each call."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable

from clawq._convert import call_to_proto
from clawq.errors import Error, Internal, from_status
from clawq.types import Ack, Call
from clawq.v1 import task_pb2, task_service_pb2


async def _each(calls: Iterable[Call] | AsyncIterable[Call]) -> AsyncIterator[Call]:
    if isinstance(calls, AsyncIterable):
        async for call in calls:
            yield call
    else:
        for call in calls:
            yield call


class Outbox:
    """Turns calls into batches and remembers which call each ack of a batch belongs to.

    A batch's id is the index of its first call; a call that cannot be converted locally
    is answered with its own rejected ack, delivered with the next batch's acks (or after
    the stream ends), so a bad item never stops the stream.
    """

    def __init__(self, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.batch_size = batch_size
        self._sent: dict[str, tuple[list[int], list[Ack]]] = {}
        self._local: list[Ack] = []
        self._indexes: list[int] = []
        self._calls: list[task_pb2.ToolCall] = []
        #: An exception the caller's iterable raised; re-raised once the stream has drained.
        self.failure: BaseException | None = None

    async def requests(
        self, calls: Iterable[Call] | AsyncIterable[Call]
    ) -> AsyncIterator[task_service_pb2.SubmitStreamRequest]:
        """The stream's requests; ends (half-closes) early if the caller's iterable fails."""
        index = 0
        try:
            async for call in _each(calls):
                self._add(index, call)
                index += 1
                if len(self._calls) >= self.batch_size:
                    yield self._flush()
        except Exception as exc:  # handed back to the caller once the stream has drained
            self.failure = exc
        if self._calls:
            yield self._flush()

    def _add(self, index: int, call: Call) -> None:
        try:
            self._calls.append(call_to_proto(call))
        except Error as exc:
            self._local.append(Ack(index=index, task_id="", error=exc))
        else:
            self._indexes.append(index)

    def _flush(self) -> task_service_pb2.SubmitStreamRequest:
        batch_id = str(self._indexes[0])
        self._sent[batch_id] = (self._indexes, self._local)
        request = task_service_pb2.SubmitStreamRequest(calls=self._calls, batch_id=batch_id)
        self._indexes, self._local, self._calls = [], [], []
        return request

    def acks(self, response: task_service_pb2.SubmitStreamResponse) -> list[Ack]:
        """The acks of one response (with any local rejections among them), in call order."""
        try:
            indexes, local = self._sent.pop(response.batch_id)
        except KeyError:
            raise Internal(f"ack for unknown batch {response.batch_id!r}") from None
        if len(indexes) != len(response.results):
            raise Internal(f"batch {response.batch_id} got {len(response.results)} results")
        acks = [
            Ack(
                index=i,
                task_id=r.task_id,
                existing=r.existing,
                error=from_status(r.error) if r.HasField("error") else None,
            )
            for i, r in zip(indexes, response.results, strict=True)
        ]
        return sorted(local + acks, key=lambda ack: ack.index) if local else acks

    def unsent(self) -> list[Ack]:
        """Local rejections that no sent batch carried (the calls after the last batch)."""
        leftovers, self._local = self._local, []
        return leftovers
