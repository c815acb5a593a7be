"""The connection under AsyncClient: one lazily opened channel, its stubs and credentials."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple, TypeVar

import grpc
from google.protobuf.message import Message

from clawq.errors import from_rpc_error
from clawq.v1 import admin_service_pb2_grpc as admin_grpc
from clawq.v1 import task_service_pb2_grpc as task_grpc

Pem = bytes | str | os.PathLike[str]
_Req = TypeVar("_Req", bound=Message)
_Resp = TypeVar("_Resp", bound=Message)

MAX_MESSAGE = 64 * 1024 * 1024
_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
]


def _pem(value: Pem | None) -> bytes | None:
    """PEM bytes as given, or read from a path."""
    if value is None or isinstance(value, bytes):
        return value
    return Path(value).read_bytes()


class _Open(NamedTuple):
    """An open channel and the stubs over it."""

    channel: grpc.aio.Channel
    tasks: task_grpc.TaskServiceAsyncStub
    admin: admin_grpc.AdminServiceAsyncStub


class Connection:
    """A channel to target, opened on first use (inside the running event loop)."""

    def __init__(
        self,
        target: str,
        token: str | None,
        timeout: float,
        *,
        tls: bool,
        ca: Pem | None,
        cert: Pem | None,
        key: Pem | None,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.metadata = (("authorization", f"Bearer {token}"),) if token else None
        self._credentials = (
            grpc.ssl_channel_credentials(_pem(ca), _pem(key), _pem(cert))
            if tls or ca or cert or key
            else None
        )
        self._open: _Open | None = None

    async def close(self) -> None:
        """Close the channel; in-flight calls are cancelled."""
        if self._open is not None:
            await self._open.channel.close()
            self._open = None

    @property
    def tasks(self) -> task_grpc.TaskServiceAsyncStub:
        """The TaskService stub."""
        return self._opened().tasks

    @property
    def admin(self) -> admin_grpc.AdminServiceAsyncStub:
        """The AdminService stub."""
        return self._opened().admin

    async def call(
        self,
        rpc: grpc.aio.UnaryUnaryMultiCallable[_Req, _Resp],
        request: _Req,
        wait: float = 0.0,
    ) -> _Resp:
        """One unary RPC; every gRPC error becomes a clawq.Error here."""
        try:
            return await rpc(request, timeout=self.timeout + wait, metadata=self.metadata)
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from exc

    def _opened(self) -> _Open:
        if self._open is None:
            channel = (
                grpc.aio.secure_channel(self.target, self._credentials, options=_OPTIONS)
                if self._credentials
                else grpc.aio.insecure_channel(self.target, options=_OPTIONS)
            )
            self._open = _Open(
                channel, task_grpc.TaskServiceStub(channel), admin_grpc.AdminServiceStub(channel)
            )
        return self._open
