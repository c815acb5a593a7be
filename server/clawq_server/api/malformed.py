"""Answers requests that do not parse with INVALID_ARGUMENT instead of grpc's bare UNKNOWN.

grpc.aio turns a deserializer exception into UNKNOWN with the exception's class in the
message. Each method's deserializer is wrapped to hand the servicer a Malformed marker
instead, and the behaviour is wrapped to abort with the canonical status when it sees one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from clawq_server.api.encoded import Encoded
from clawq_server.api.status import abort
from clawq_server.errors import InvalidArgument

Ctx = grpc.aio.ServicerContext[Any, Any]
_MALFORMED = InvalidArgument(
    "the request is not a valid message of this method", reason="MALFORMED_REQUEST"
)


class Malformed:
    """Stands in for a request whose bytes did not parse."""


def _passing_encoded(serialize: Callable[[Any], bytes] | None) -> Callable[[Any], bytes]:
    def encode(response: Any) -> bytes:
        if isinstance(response, Encoded):
            return response.data
        assert serialize is not None  # noqa: S101 - generated handlers always have one
        return serialize(response)

    return encode


def _safe(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except (DecodeError, ValueError, RuntimeError):
            return Malformed()

    return parse


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    # Raised, not aborted from here: the servicer reading the stream turns it into the
    # call's status like any other error of the stream.
    async for request in requests:
        if isinstance(request, Malformed):
            raise _MALFORMED
        yield request


def _unary_request(behavior: Any) -> Any:
    async def handle(request: Any, context: Ctx) -> Any:
        if isinstance(request, Malformed):
            await abort(context, _MALFORMED)
        return await behavior(request, context)

    return handle


def _unary_request_stream(behavior: Any) -> Any:
    async def handle(request: Any, context: Ctx) -> AsyncIterator[Any]:
        if isinstance(request, Malformed):
            await abort(context, _MALFORMED)
        async for reply in behavior(request, context):
            yield reply

    return handle


def _stream_request(behavior: Any) -> Any:
    async def handle(requests: AsyncIterator[Any], context: Ctx) -> Any:
        return await behavior(_checked(requests), context)

    return handle


def _stream_request_stream(behavior: Any) -> Any:
    async def handle(requests: AsyncIterator[Any], context: Ctx) -> AsyncIterator[Any]:
        async for reply in behavior(_checked(requests), context):
            yield reply

    return handle


def guard(handler: Any) -> Any:
    """The same method handler, answering unparsable requests with INVALID_ARGUMENT."""
    parse = handler.request_deserializer
    fields: dict[str, Any] = {
        "request_deserializer": _safe(parse) if parse else None,
        "response_serializer": _passing_encoded(handler.response_serializer),
    }
    if handler.unary_unary is not None:
        fields["unary_unary"] = _unary_request(handler.unary_unary)
    elif handler.unary_stream is not None:
        fields["unary_stream"] = _unary_request_stream(handler.unary_stream)
    elif handler.stream_unary is not None:
        fields["stream_unary"] = _stream_request(handler.stream_unary)
    elif handler.stream_stream is not None:
        fields["stream_stream"] = _stream_request_stream(handler.stream_stream)
    return handler._replace(**fields)


class GuardedServer:
    """Collects what generated add_*_to_server functions register, guarding each method."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        """Dropped: generated code passes the same methods to the call below, where they
        are registered guarded (both as generic and as registered handlers)."""

    def add_registered_method_handlers(self, service: str, methods: Mapping[str, Any]) -> None:
        """Register the service's methods, each guarded."""
        guarded = {name: guard(handler) for name, handler in methods.items()}
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, guarded),)
        )
        self._server.add_registered_method_handlers(service, guarded)
