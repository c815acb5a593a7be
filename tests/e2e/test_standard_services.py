"""The standard gRPC services: health checks and server reflection."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.conftest import Served


async def test_health_reports_serving_for_the_server_and_each_service(served: Served) -> None:
    """grpc.health.v1 answers SERVING for "" and for every clawq service."""
    async with grpc.aio.insecure_channel(served.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in (
            "",
            "clawq.v1.TaskService",
            "clawq.v1.WorkerService",
            "clawq.v1.AdminService",
        ):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_services(served: Served) -> None:
    """Server reflection names the clawq services, so grpcurl needs no .proto files."""
    async with grpc.aio.insecure_channel(served.target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)

        async def requests() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        async for reply in stub.ServerReflectionInfo(requests()):
            names = {s.name for s in reply.list_services_response.service}
            break
    assert {"clawq.v1.TaskService", "clawq.v1.WorkerService", "clawq.v1.AdminService"} <= names
