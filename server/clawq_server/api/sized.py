"""Responses that fit in one gRPC message: a page too large shrinks, a batch is refused.

Without these a response over the message limit fails in gRPC's core after the handler
returns: the caller gets a bare RESOURCE_EXHAUSTED and the server logs an error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TypeVar

from google.protobuf.message import Message

from clawq_server.errors import ResourceExhausted
from clawq_server.model import TaskPage, TaskQuery

MAX_MESSAGE_BYTES = 64 << 20
# Room for the status, trailers and framing around the message.
RESPONSE_BYTES = MAX_MESSAGE_BYTES - (1 << 20)

Response = TypeVar("Response", bound=Message)


async def fitting_page(
    list_page: Callable[[TaskQuery], Awaitable[TaskPage]],
    query: TaskQuery,
    build: Callable[[TaskPage], Response],
) -> Response:
    """The response of the largest page, up to query.limit tasks, that fits in a message.

    A page too large is asked for again with half as many tasks, so its next-page token
    is still the store's own cursor.
    """
    while True:
        page = await list_page(query)
        response = build(page)
        if len(page.tasks) <= 1 or response.ByteSize() <= RESPONSE_BYTES:
            return response
        query = replace(query, limit=len(page.tasks) // 2)


def check_fits(response: Message) -> None:
    """Refuse a response of named tasks that cannot be sent in one message."""
    size = response.ByteSize()
    if size > RESPONSE_BYTES:
        raise ResourceExhausted(
            f"the tasks asked for hold {size} bytes, more than the {RESPONSE_BYTES} one "
            "response may; ask for fewer at a time",
            reason="RESPONSE_TOO_LARGE",
            retry_after=None,
        )
