"""Batching calls into SubmitStream requests and matching the acks back to each call."""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator, Iterable

from clawq._channel import MAX_MESSAGE
from clawq._convert import call_to_proto
from clawq.errors import Error, Internal, InvalidArgument, from_status
from clawq.types import Ack, Call
from clawq.v1 import task_pb2, task_service_pb2

#: A batch is sent once its calls reach this many bytes, whatever batch_size says, so a
#: request stays well under the message limit while the next batch is built.
BATCH_BYTES = 16 << 20
#: The largest call a request can carry, with room to spare for the request around it.
MAX_CALL_BYTES = MAX_MESSAGE - (64 << 10)


async def _each(calls: Iterable[Call] | AsyncIterable[Call]) -> AsyncIterator[Call]:
    if isinstance(calls, AsyncIterable):
        async for call in calls:
            yield call
    else:
        for call in calls:
            yield call


class Outbox:
    """Turns calls into batches and remembers which call each ack of a batch belongs to.

    A batch's id is the index of its first call; it holds up to batch_size calls and about
    BATCH_BYTES. A call that cannot be converted locally, or is too large for any request,
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
        self._bytes = 0
        #: An exception the caller's iterable raised; re-raised once the stream has drained.
        self.failure: BaseException | None = None

    async def requests(
        self, calls: Iterable[Call] | AsyncIterable[Call]
    ) -> AsyncIterator[task_service_pb2.SubmitStreamRequest]:
        """The stream's requests; ends (half-closes) early if the caller's iterable fails."""
        index = 0
        try:
            async for call in _each(calls):
                converted = self._convert(index, call)
                if converted is not None:
                    message, size = converted
                    if self._calls and self._bytes + size > BATCH_BYTES:
                        yield self._flush()
                    self._calls.append(message)
                    self._indexes.append(index)
                    self._bytes += size
                    if len(self._calls) >= self.batch_size:
                        yield self._flush()
                index += 1
        except Exception as exc:  # handed back to the caller once the stream has drained
            self.failure = exc
        if self._calls:
            yield self._flush()

    def _convert(self, index: int, call: Call) -> tuple[task_pb2.ToolCall, int] | None:
        """The call as a message and its size, or None once it is rejected locally."""
        try:
            message = call_to_proto(call)
        except Error as exc:
            self._local.append(Ack(index=index, task_id="", error=exc))
            return None
        size = message.ByteSize()
        if size > MAX_CALL_BYTES:
            description = f"is larger than the {MAX_CALL_BYTES} bytes a request holds"
            too_large = InvalidArgument(
                f"call: {description}", field_violations=[("call", description)]
            )
            self._local.append(Ack(index=index, task_id="", error=too_large))
            return None
        return message, size

    def _flush(self) -> task_service_pb2.SubmitStreamRequest:
        batch_id = str(self._indexes[0])
        self._sent[batch_id] = (self._indexes, self._local)
        request = task_service_pb2.SubmitStreamRequest(calls=self._calls, batch_id=batch_id)
        self._indexes, self._local, self._calls, self._bytes = [], [], [], 0
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
                error=_per_call(from_status(r.error)) if r.HasField("error") else None,
            )
            for i, r in zip(indexes, response.results, strict=True)
        ]
        return sorted(local + acks, key=lambda ack: ack.index) if local else acks

    def unsent(self) -> list[Ack]:
        """Local rejections that no sent batch carried (the calls after the last batch)."""
        leftovers, self._local = self._local, []
        return leftovers


_IN_BATCH = re.compile(r"^calls\[\d+\]\.")


def _per_call(error: Error) -> Error:
    """The error of one call: the server names fields by position in its batch
    (``calls[3].args.path``); an ack belongs to one call, so it says ``call.args.path`` as a
    single submit would."""
    error.field_violations = [(_IN_BATCH.sub("call.", f), d) for f, d in error.field_violations]
    return error
