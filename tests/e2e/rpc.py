"""Raw-stub helpers for e2e tests that check status codes and google.rpc details."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


@dataclass(frozen=True)
class Rich:
    """The parts of an error status the tests assert on."""

    code: grpc.StatusCode
    reason: str
    fields: list[str]
    retry_after: float | None
    message: str


def rich(error: grpc.aio.AioRpcError) -> Rich:
    """Decode the google.rpc details of an RPC error."""
    status = rpc_status.from_call(error)
    reason, fields, retry = "", [], None
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields = [v.field for v in bad.field_violations]
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info_r = error_details_pb2.RetryInfo()
            detail.Unpack(info_r)
            retry = info_r.retry_delay.ToTimedelta().total_seconds()
    return Rich(error.code(), reason, fields, retry, error.details() or "")
