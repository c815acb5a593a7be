"""Responses that fit in one gRPC message: a page too large shrinks, a batch is refused.

Without these a response over the message limit fails in gRPC's core after the handler
returns: the caller gets a bare RESOURCE_EXHAUSTED and the server logs an error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Protocol, TypeVar

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from google.protobuf.message import Message

from clawq.v1 import task_pb2 as pb
from clawq_server.errors import ResourceExhausted
from clawq_server.model import TaskPage, TaskQuery

MAX_MESSAGE_BYTES = 64 << 20
# Room for the status, trailers and framing around the message.
RESPONSE_BYTES = MAX_MESSAGE_BYTES - (1 << 20)
# A repeated field's tag and length prefix, at most.
TASK_FRAMING = 6


class TaskListing(Protocol):
    """A response holding a page of tasks."""

    @property
    def tasks(self) -> RepeatedCompositeFieldContainer[pb.Task]:
        """The page."""
        ...

    def ByteSize(self) -> int:
        """The encoded size."""
        ...


Response = TypeVar("Response", bound=TaskListing)


async def fitting_page(
    list_page: Callable[[TaskQuery], Awaitable[TaskPage]],
    query: TaskQuery,
    build: Callable[[TaskPage], Response],
) -> Response:
    """The response of the largest page, up to query.limit tasks, that fits in a message.

    A page too large is asked for again with as many of its first tasks as fit, so its
    next-page token is still the store's own cursor. A single task too large for any
    message is refused.
    """
    while True:
        page = await list_page(query)
        response = build(page)
        size = response.ByteSize()
        if size <= RESPONSE_BYTES:
            return response
        fitting = _fitting(response)
        if fitting == 0:
            raise _too_large(size)  # one task alone does not fit
        # Fewer than last time, should the store have changed in between.
        query = replace(query, limit=min(fitting, len(page.tasks) - 1))


def _fitting(response: TaskListing) -> int:
    """How many leading tasks of response fit in RESPONSE_BYTES."""
    used = 0
    for count, task in enumerate(response.tasks):
        used += task.ByteSize() + TASK_FRAMING
        if used > RESPONSE_BYTES:
            return count
    return len(response.tasks)


def check_fits(response: Message) -> None:
    """Refuse a response of named tasks that cannot be sent in one message."""
    size = response.ByteSize()
    if size > RESPONSE_BYTES:
        raise _too_large(size)


def _too_large(size: int) -> ResourceExhausted:
    return ResourceExhausted(
        f"the tasks asked for hold {size} bytes, more than the {RESPONSE_BYTES} one "
        "response may; ask for fewer at a time",
        reason="RESPONSE_TOO_LARGE",
        retry_after=None,
    )
