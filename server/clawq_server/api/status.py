"""Maps domain errors to canonical gRPC codes with google.rpc details (AIP-193)."""

from __future__ import annotations

import logging
from typing import NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from clawq_server import errors

log = logging.getLogger(__name__)
DOMAIN = "clawq"
# Messages echo what the caller sent (an id, a tool name, a path); clipped, a status always
# fits gRPC's 8 KiB of trailing metadata, whatever the request held: the message goes out
# twice (percent-encoded, up to 3 characters a byte, and in the details) with the field
# violation's path and description beside it.
MAX_TEXT_BYTES = 512

CODES: tuple[tuple[type[errors.ClawqError], grpc.StatusCode], ...] = (
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.IdempotencyKeyReused, grpc.StatusCode.ALREADY_EXISTS),
    (errors.TaskAlreadyFinished, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.PolicyDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.BackendUnavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.LeaseLost, grpc.StatusCode.ABORTED),
)


def code_of(error: errors.ClawqError) -> grpc.StatusCode:
    """The canonical code of a domain error (INTERNAL for anything unlisted)."""
    for kind, code in CODES:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.INTERNAL


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def to_status(error: BaseException) -> status_pb2.Status:
    """The google.rpc.Status of an error: ErrorInfo always, BadRequest and RetryInfo when apt."""
    if not isinstance(error, errors.ClawqError):
        error = errors.ClawqError("internal error")
    code = code_of(error)
    details = [_pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN))]
    if error.violations:
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=_clip(v.field), description=_clip(v.description)
                        )
                        for v in error.violations
                    ]
                )
            )
        )
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(retry_after * 1e9))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    return status_pb2.Status(
        code=getattr(code_pb2, code.name), message=_clip(error.message), details=details
    )


def _clip(text: str) -> str:
    # Escaped, not replaced: a lone surrogate (a file name that is not UTF-8, echoed back)
    # cannot go into a protobuf string at all, and would end the call with UNKNOWN.
    raw = text.encode(errors="backslashreplace")
    if len(raw) <= MAX_TEXT_BYTES:
        return raw.decode()
    return raw[: MAX_TEXT_BYTES - 3].decode(errors="ignore") + "…"


async def abort(
    context: grpc.aio.ServicerContext[object, object], error: BaseException
) -> NoReturn:
    """End the RPC with the status of error; unexpected errors are logged, never shown."""
    if not isinstance(error, errors.ClawqError):
        log.exception("unexpected error in %s", type(error).__name__, exc_info=error)
    await context.abort_with_status(rpc_status.to_status(to_status(error)))
    raise AssertionError("abort_with_status returned")  # pragma: no cover
