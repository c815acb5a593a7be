"""Container health probe: grpc.health.v1 Check on the local server; exit 0 when SERVING."""

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main(target: str = "127.0.0.1:50051") -> int:
    """Print the server's health status; 0 when SERVING, 1 otherwise or when unreachable."""
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=2.0
            )
        except grpc.RpcError as error:
            print(f"UNREACHABLE {error.code().name}")
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(status)
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
