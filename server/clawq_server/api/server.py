"""Builds the grpc.aio server: servicers, health, reflection, TLS, message limits."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from clawq.v1 import admin_service_pb2, task_service_pb2, worker_service_pb2
from clawq.v1 import admin_service_pb2_grpc as adm_grpc
from clawq.v1 import task_service_pb2_grpc as ts_grpc
from clawq.v1 import worker_service_pb2_grpc as ws_grpc
from clawq_server.api.admin_service import AdminServicer
from clawq_server.api.malformed import GuardedServer
from clawq_server.api.sized import MAX_MESSAGE_BYTES
from clawq_server.api.task_service import TaskServicer
from clawq_server.api.worker_service import WorkerServicer
from clawq_server.config import TlsConfig

SERVICE_NAMES: Sequence[str] = (
    task_service_pb2.DESCRIPTOR.services_by_name["TaskService"].full_name,
    worker_service_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name,
    admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
)


def is_loopback(listen: str) -> bool:
    """True when host:port binds only the loopback interface."""
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(slots=True)
class Served:
    """A started server, its bound port and its health servicer."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer

    async def set_serving(self, serving: bool) -> None:
        """Report SERVING or NOT_SERVING for the whole server and each service."""
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, status)


def _credentials(tls: TlsConfig) -> grpc.ServerCredentials:
    ca = tls.client_ca.read_bytes() if tls.client_ca else None
    return grpc.ssl_server_credentials(
        [(tls.key.read_bytes(), tls.cert.read_bytes())],
        root_certificates=ca,
        require_client_auth=ca is not None,
    )


async def start_server(
    listen: str,
    tls: TlsConfig | None,
    tasks: TaskServicer,
    admin: AdminServicer,
    worker: WorkerServicer,
) -> Served:
    """Bind, register everything and start serving."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=10_000,
    )
    guarded = GuardedServer(server)
    ts_grpc.add_TaskServiceServicer_to_server(tasks, guarded)  # type: ignore[arg-type]
    adm_grpc.add_AdminServiceServicer_to_server(admin, guarded)  # type: ignore[arg-type]
    ws_grpc.add_WorkerServiceServicer_to_server(worker, guarded)  # type: ignore[arg-type]
    checker = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    reflection.enable_server_reflection(
        (
            *SERVICE_NAMES,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    port = (
        server.add_secure_port(listen, _credentials(tls))
        if tls is not None
        else server.add_insecure_port(listen)
    )
    await server.start()
    served = Served(server, port, checker)
    await served.set_serving(True)
    return served
