"""Authentication and isolation: tokens, TLS and mTLS, insecure binds, per-principal tasks."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest

import clawq
from clawq.v1 import task_pb2 as pb
from clawq.v1 import task_service_pb2 as ts
from clawq.v1 import task_service_pb2_grpc as ts_grpc
from clawq.v1 import worker_service_pb2 as ws
from clawq.v1 import worker_service_pb2_grpc as ws_grpc
from clawq_server.app import check_bind
from clawq_server.config import AuthConfig, Config, TlsConfig, default_principal, hash_token
from clawq_server.errors import InvalidArgument
from clawq_server.policy.principal import Principal
from clawq_server.queue import sqlite_ops
from tests.conftest import ServerFactory
from tests.e2e.rpc import rich
from tests.processes import child_env
from tests.security.certs import Authority


def _principals(tmp_path: Path, **extra: Any) -> dict[str, Principal]:
    root = tmp_path / "workspace"
    root.mkdir(exist_ok=True)
    alice = replace(default_principal([root]), name="alice", worker=False, **extra)
    bob = replace(default_principal([root]), name="bob", worker=False)
    return {"alice": alice, "bob": bob}


def _auth(**subjects: str) -> AuthConfig:
    return AuthConfig(
        tokens={hash_token("alice-token"): "alice", hash_token("bob-token"): "bob"},
        subjects=subjects,
        anonymous=False,
    )


async def test_calls_without_or_with_a_wrong_token_are_unauthenticated(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """No token and a wrong token both get UNAUTHENTICATED; the right token works."""
    async with server_factory(auth=_auth(), principals=_principals(tmp_path)) as served:
        for token in (None, "guess", "Bearer"):
            async with clawq.AsyncClient(served.target, token=token) as client:
                with pytest.raises(clawq.Unauthenticated) as caught:
                    await client.submit("read_file", path="a.txt")
                assert caught.value.reason == "UNAUTHENTICATED"
        async with clawq.AsyncClient(served.target, token="alice-token") as client:
            assert await client.submit("read_file", path="a.txt")


async def test_a_task_is_visible_only_to_its_principal(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """Bob gets NOT_FOUND for Alice's task, cannot cancel it, and does not list it."""
    async with server_factory(auth=_auth(), principals=_principals(tmp_path), workers=0) as served:
        async with clawq.AsyncClient(served.target, token="alice-token") as alice:
            task_id = await alice.submit("read_file", path="a.txt")
        async with clawq.AsyncClient(served.target, token="bob-token") as bob:
            with pytest.raises(clawq.NotFound):
                await bob.get(task_id)
            with pytest.raises(clawq.NotFound):
                await bob.cancel(task_id)
            assert await bob.get_many([task_id]) == []
            assert [t async for page in bob.list_tasks() for t in page] == []


async def test_only_worker_principals_may_lease(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """WorkerService refuses a principal that is not marked as a worker."""
    async with (
        server_factory(auth=_auth(), principals=_principals(tmp_path)) as served,
        grpc.aio.insecure_channel(served.target) as channel,
    ):
        stub = ws_grpc.WorkerServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Lease(
                ws.LeaseRequest(worker_id="x", tools=["read_file"], max_tasks=1),
                metadata=[("authorization", "Bearer alice-token")],
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_rate_limit_answers_resource_exhausted_with_retry_info(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """Past its burst, a principal gets RESOURCE_EXHAUSTED with a retry delay."""
    principals = _principals(tmp_path, rate_per_s=0.5, burst=2)
    async with (
        server_factory(auth=_auth(), principals=principals, workers=0) as served,
        clawq.AsyncClient(served.target, token="alice-token") as client,
    ):
        await client.submit("read_file", path="a")
        await client.submit("read_file", path="b")
        with pytest.raises(clawq.ResourceExhausted) as caught:
            await client.submit("read_file", path="c")
    assert caught.value.reason == "RATE_LIMITED"
    assert caught.value.retry_after is not None
    assert caught.value.retry_after > 0


async def test_tls_serves_encrypted_calls(server_factory: ServerFactory, tmp_path: Path) -> None:
    """With a server certificate, a client trusting the CA connects; a plaintext client fails."""
    ca = Authority(tmp_path)
    server = ca.issue("server", "localhost", server=True)
    tls = TlsConfig(server.cert, server.key)
    async with server_factory(tls=tls, auth=_auth(), principals=_principals(tmp_path)) as served:
        async with clawq.AsyncClient(
            served.target, token="alice-token", tls=True, ca=ca.pair.cert.read_bytes()
        ) as client:
            assert await client.submit("read_file", path="a.txt")
        async with clawq.AsyncClient(served.target, token="alice-token", timeout=3) as plain:
            with pytest.raises(clawq.Unavailable):
                await plain.submit("read_file", path="a.txt")


async def test_mtls_maps_a_client_certificate_and_refuses_clients_without_one(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """Under mTLS a client certificate's subject names the principal; no certificate, no call."""
    ca = Authority(tmp_path)
    server = ca.issue("server", "localhost", server=True)
    client_pair = ca.issue("agent", "agent-7")
    tls = TlsConfig(server.cert, server.key, client_ca=ca.pair.cert)
    principals = _principals(tmp_path)
    async with server_factory(
        tls=tls, auth=_auth(**{"agent-7": "alice"}), principals=principals
    ) as served:
        async with clawq.AsyncClient(
            served.target,
            tls=True,
            ca=ca.pair.cert.read_bytes(),
            cert=client_pair.cert.read_bytes(),
            key=client_pair.key.read_bytes(),
        ) as client:
            task_id = await client.submit("read_file", path="a.txt")
        async with clawq.AsyncClient(
            served.target, token="alice-token", tls=True, ca=ca.pair.cert.read_bytes(), timeout=3
        ) as nocert:
            with pytest.raises(clawq.Unavailable):
                await nocert.get(task_id)


def test_non_loopback_bind_without_tls_and_auth_is_refused() -> None:
    """0.0.0.0 without TLS and auth is refused unless insecure is set."""
    with pytest.raises(InvalidArgument):
        check_bind(Config(listen="0.0.0.0:0"))
    check_bind(Config(listen="0.0.0.0:0", insecure=True))
    check_bind(Config(listen="127.0.0.1:0"))


async def test_clawq_serve_refuses_an_insecure_public_bind(tmp_path: Path) -> None:
    """`clawq serve --listen 0.0.0.0:0` exits 2 with a one-line reason."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "clawq_server.main",
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--db",
        str(tmp_path / "q.db"),
        "--root",
        str(tmp_path / "ws"),
        stderr=asyncio.subprocess.PIPE,
        env=child_env(),
    )
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2
    assert b"--insecure" in err
    assert b"Traceback" not in err


async def test_a_principal_past_its_queued_cap_is_refused(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """max_queued bounds each principal's waiting tasks: QUEUE_FULL with a retry delay."""
    principals = _principals(tmp_path, max_queued=3)
    async with (
        server_factory(auth=_auth(), principals=principals, workers=0) as served,
        clawq.AsyncClient(served.target, token="alice-token") as alice,
        clawq.AsyncClient(served.target, token="bob-token") as bob,
    ):
        await alice.submit_batch([clawq.Call("read_file", path=f"{i}") for i in range(3)])
        with pytest.raises(clawq.ResourceExhausted) as caught:
            await alice.submit("read_file", path="one-more")
        assert await bob.submit("read_file", path="bob-is-not-capped")
    assert caught.value.reason == "QUEUE_FULL"
    assert caught.value.retry_after is not None


async def test_a_stream_never_queues_past_the_cap_and_acks_every_batch(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """Batches in flight together are counted against max_queued together; a refused batch
    is acked with QUEUE_FULL for each call, and the batches after it are still acked."""
    principals = _principals(tmp_path, max_queued=5)
    calls = [clawq.Call("read_file", path=f"{i}") for i in range(40)]
    async with (
        server_factory(auth=_auth(), principals=principals, workers=0) as served,
        clawq.AsyncClient(served.target, token="alice-token") as alice,
    ):
        acks = [ack async for ack in alice.submit_many(calls, batch_size=2)]
        stored = [t async for page in alice.list_tasks() for t in page]
    assert [a.index for a in acks] == list(range(40))
    accepted = {a.task_id for a in acks if a.accepted}
    assert accepted == {t.id for t in stored}
    assert 0 < len(accepted) <= 5
    refused = [a.error for a in acks if not a.accepted]
    assert all(isinstance(e, clawq.ResourceExhausted) for e in refused)
    assert all(e.reason == "QUEUE_FULL" and e.retry_after for e in refused)  # type: ignore[union-attr]


async def test_a_rate_limited_stream_batch_is_refused_call_by_call_and_audited(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """A batch past the principal's rate is acked RATE_LIMITED for each call, the refusal is
    audited as one record counting the calls, and the stream goes on."""
    principals = _principals(tmp_path, rate_per_s=0.01, burst=3)
    calls = [clawq.Call("read_file", path=f"{i}") for i in range(6)]
    async with (
        server_factory(auth=_auth(), principals=principals, workers=0) as served,
        clawq.AsyncClient(served.target, token="alice-token") as alice,
    ):
        acks = [ack async for ack in alice.submit_many(calls, batch_size=3)]
    assert [a.accepted for a in acks] == [True] * 3 + [False] * 3
    assert {a.error.reason for a in acks[3:] if a.error} == {"RATE_LIMITED"}
    audit = [orjson.loads(line) for line in (tmp_path / "audit.jsonl").read_bytes().splitlines()]
    refused = [r["args"] for r in audit if r.get("reason") == "RATE_LIMITED"]
    assert refused == [{"calls": 3, "tools": {"read_file": 3}}]


async def test_a_batch_larger_than_the_burst_is_admitted_once_and_paid_for(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """A full bucket admits a batch beyond the burst; the calls after it wait for the rate
    to pay the debt, and the retry hint says how long."""
    principals = _principals(tmp_path, rate_per_s=0.5, burst=2)
    async with (
        server_factory(auth=_auth(), principals=principals, workers=0) as served,
        clawq.AsyncClient(served.target, token="alice-token") as alice,
    ):
        ids = await alice.submit_batch([clawq.Call("read_file", path=f"{i}") for i in range(5)])
        with pytest.raises(clawq.ResourceExhausted) as caught:
            await alice.submit("read_file", path="next")
    assert len(ids) == 5
    assert caught.value.reason == "RATE_LIMITED"
    assert caught.value.retry_after is not None
    assert caught.value.retry_after > 6  # (1 token + a debt of 3) at 0.5 tokens/s, less a little


async def test_a_cancelled_submit_keeps_its_room_until_its_write_ends(
    server_factory: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller that goes away while its task is being written does not free its room under
    max_queued: the write goes on, so a submit meanwhile is refused, and the cap holds."""
    entered, release = threading.Event(), threading.Event()
    write = sqlite_ops.submit

    def held_write(*args: Any, **kwargs: Any) -> Any:
        if not release.is_set():
            entered.set()
            release.wait(10)
        return write(*args, **kwargs)

    monkeypatch.setattr(sqlite_ops, "submit", held_write)
    call = pb.ToolCall(tool="read_file", read_file=pb.ReadFileArgs(path="a"))
    handlers: list[asyncio.Task[Any]] = []
    async with (
        server_factory(workers=0, principal_overrides={"max_queued": 1}) as served,
        grpc.aio.insecure_channel(served.target) as channel,
    ):
        count = served.app.queue.count_queued

        async def counted(principal: str) -> int:
            handlers.append(asyncio.current_task())  # type: ignore[arg-type]
            return await count(principal)

        monkeypatch.setattr(served.app.queue, "count_queued", counted)
        stub = ts_grpc.TaskServiceStub(channel)
        first = stub.Submit(ts.SubmitRequest(call=call))
        assert await asyncio.to_thread(entered.wait, 10)
        first.cancel()
        await _until(handlers[0].done)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Submit(ts.SubmitRequest(call=call), timeout=5)
        finally:
            release.set()
        assert rich(caught.value).reason == "QUEUE_FULL"
        await _until_stored(stub, 1)


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.01)


async def _until_stored(stub: ts_grpc.TaskServiceAsyncStub, count: int) -> None:
    deadline = time.monotonic() + 10.0
    while len((await stub.ListTasks(ts.ListTasksRequest())).tasks) != count:
        assert time.monotonic() < deadline, f"{count} tasks were never stored"
        await asyncio.sleep(0.01)


async def test_a_refused_batch_leaves_no_rate_debt(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """The tokens of a batch refused as a whole (here for one unknown tool among many good
    calls) are given back: the principal is not locked out for calls never stored."""
    principals = _principals(tmp_path, rate_per_s=0.01, burst=2)
    good = [clawq.Call("read_file", path=f"{i}") for i in range(50)]
    async with (
        server_factory(auth=_auth(), principals=principals, workers=0) as served,
        clawq.AsyncClient(served.target, token="alice-token") as alice,
    ):
        with pytest.raises(clawq.InvalidArgument):
            await alice.submit_batch([*good, clawq.Call("no_such_tool")])
        assert await alice.submit("read_file", path="after")


async def test_a_request_refused_by_the_store_still_costs_its_token(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """A call refused for a reused idempotency key is charged like any other, so repeating
    it cannot get round the rate limit."""
    principals = _principals(tmp_path, rate_per_s=0.01, burst=2)
    async with (
        server_factory(auth=_auth(), principals=principals, workers=0) as served,
        clawq.AsyncClient(served.target, token="alice-token") as alice,
    ):
        await alice.submit("read_file", path="a", idempotency_key="k")
        reasons = []
        for _ in range(3):
            with pytest.raises(clawq.Error) as caught:
                await alice.submit("read_file", path="other", idempotency_key="k")
            reasons.append(caught.value.reason)
    assert reasons == ["IDEMPOTENCY_KEY_REUSED", "RATE_LIMITED", "RATE_LIMITED"]
