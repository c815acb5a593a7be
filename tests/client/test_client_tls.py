"""The client's TLS and mTLS channels against a real grpc.aio server with test certificates."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import clawq
from clawq.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc

Key = ec.EllipticCurvePrivateKey


def _cert(
    name: str, key: Key, issuer: tuple[x509.Certificate, Key] | None, *, ca: bool = False
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        builder = builder.add_extension(san, critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: Key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class Pki:
    ca: bytes
    server_cert: bytes
    server_key: bytes
    client_cert: Path
    client_key: Path
    ca_path: Path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test ca", ca_key, None, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    client_key = ec.generate_private_key(ec.SECP256R1())
    files = {
        "ca.pem": _pem(ca),
        "client.pem": _pem(_cert("agent", client_key, (ca, ca_key))),
        "client.key": _key_pem(client_key),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return Pki(
        ca=_pem(ca),
        server_cert=_pem(_cert("server", server_key, (ca, ca_key))),
        server_key=_key_pem(server_key),
        client_cert=tmp_path / "client.pem",
        client_key=tmp_path / "client.key",
        ca_path=tmp_path / "ca.pem",
    )


class Echo(task_service_pb2_grpc.TaskServiceServicer):
    """Answers GetTask with the client certificate's common name as the task id."""

    async def GetTask(self, request: Any, context: Any) -> task_service_pb2.GetTaskResponse:
        names = context.auth_context().get("x509_common_name", [b"none"])
        task = task_pb2.Task(id=names[0].decode(), state=task_pb2.TASK_STATE_QUEUED)
        return task_service_pb2.GetTaskResponse(task=task)


@pytest.fixture
async def mtls_target(pki: Pki) -> AsyncIterator[str]:
    """A grpc.aio server on loopback that requires a client certificate from the test CA."""
    server = grpc.aio.server()
    # The stubs mark every RPC abstract; at run time the rest answer UNIMPLEMENTED.
    task_service_pb2_grpc.add_TaskServiceServicer_to_server(Echo(), server)  # type: ignore[abstract]
    credentials = grpc.ssl_server_credentials(
        [(pki.server_key, pki.server_cert)], root_certificates=pki.ca, require_client_auth=True
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(None)


async def test_mtls_with_paths(pki: Pki, mtls_target: str) -> None:
    """A client with the CA, certificate and key (as paths) is served and identified."""
    async with clawq.AsyncClient(
        mtls_target, ca=pki.ca_path, cert=pki.client_cert, key=pki.client_key
    ) as client:
        assert (await client.get("x")).id == "agent"


async def test_mtls_with_pem_bytes(pki: Pki, mtls_target: str) -> None:
    """PEM bytes work as well as paths."""
    cert, key = pki.client_cert.read_bytes(), pki.client_key.read_bytes()
    async with clawq.AsyncClient(mtls_target, ca=pki.ca, cert=cert, key=key) as client:
        assert (await client.get("x")).id == "agent"


async def test_missing_client_certificate_is_refused(pki: Pki, mtls_target: str) -> None:
    """Without a client certificate the handshake fails and the call raises Unavailable."""
    async with clawq.AsyncClient(mtls_target, ca=pki.ca_path, timeout=5) as client:
        with pytest.raises(clawq.Unavailable):
            await client.get("x")


async def test_plaintext_client_cannot_talk_to_tls(mtls_target: str) -> None:
    """A plaintext client against a TLS server fails with Unavailable, not a hang."""
    async with clawq.AsyncClient(mtls_target, timeout=5) as client:
        with pytest.raises(clawq.Unavailable):
            await client.get("x")
