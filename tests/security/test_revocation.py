"""A reload that revokes a principal applies at once: to open streams, to tasks it queued
before, and never by turning authentication off. Ambiguous credentials are refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest
from google.protobuf.struct_pb2 import Struct

from clawq.v1 import task_pb2 as pb
from clawq.v1 import task_service_pb2 as ts
from clawq.v1 import task_service_pb2_grpc as ts_grpc
from clawq.v1 import worker_service_pb2 as ws
from clawq.v1 import worker_service_pb2_grpc as ws_grpc
from clawq_server import config
from clawq_server.app import App, build_app
from clawq_server.errors import InvalidArgument
from clawq_server.model import TaskState
from tests.e2e.rpc import rich

ALICE = [("authorization", "Bearer alice-token")]
OPS = [("authorization", "Bearer ops-token")]
HEAD = """
[server]
listen = "127.0.0.1:0"
backend = "sqlite://{db}"
workers = 0

[[tools]]
name = "uppercase"
side_effect = "read_only"
schema = {{ type = "object", properties = {{ text = {{ type = "string" }} }} }}

[[principals]]
name = "ops"
token_sha256 = ["{ops}"]
roots = [{{ path = "ws" }}]
admin = true
worker = true
"""
ALICE_BLOCK = """
[[principals]]
name = "alice"
token_sha256 = ["{alice}"]
roots = [{{ path = "ws" }}]
"""


def _write(path: Path, *, alice: bool = True, extra: str = "") -> None:
    text = HEAD.format(db=path.parent / "q.db", ops=config.hash_token("ops-token"))
    if alice:
        text += ALICE_BLOCK.format(alice=config.hash_token("alice-token"))
    path.write_text(text + extra)


@asynccontextmanager
async def _served(tmp_path: Path) -> AsyncIterator[tuple[App, grpc.aio.Channel]]:
    (tmp_path / "ws").mkdir(exist_ok=True)
    path = tmp_path / "clawq.toml"
    _write(path)
    loaded = config.load(path, {}, audit_path=tmp_path / "audit.jsonl")
    async with (
        build_app(loaded) as app,
        grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel,
    ):
        yield app, channel


def _upper(text: str) -> pb.ToolCall:
    arguments = Struct()
    arguments.update({"text": text})
    return pb.ToolCall(tool="uppercase", arguments=arguments)


async def test_a_stream_opened_before_a_revocation_takes_no_more_batches(tmp_path: Path) -> None:
    """After the reload, the next batch of alice's open SubmitStream ends it UNAUTHENTICATED
    and stores nothing; the batch before it was stored."""
    async with _served(tmp_path) as (app, channel):
        batches: asyncio.Queue[ts.SubmitStreamRequest | None] = asyncio.Queue()

        async def requests() -> AsyncIterator[ts.SubmitStreamRequest]:
            while (batch := await batches.get()) is not None:
                yield batch

        stream = ts_grpc.TaskServiceStub(channel).SubmitStream(requests(), metadata=ALICE)
        await batches.put(ts.SubmitStreamRequest(calls=[_upper("before")], batch_id="1"))
        first = await stream.read()
        assert isinstance(first, ts.SubmitStreamResponse)
        assert not first.results[0].HasField("error")
        _write(tmp_path / "clawq.toml", alice=False)
        assert await app.reload() == ""
        await batches.put(ts.SubmitStreamRequest(calls=[_upper("after")], batch_id="2"))
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await stream.read()
        assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED
        stats = await app.queue.stats()
    assert sum(stats.ready_by_priority.values()) == 1


async def test_a_remote_worker_gets_no_task_of_a_removed_principal(tmp_path: Path) -> None:
    """A task alice queued before she was removed fails POLICY_DENIED when leased, instead
    of being handed to the worker (audited as FAILED); ops's task leased with it is handed
    out; the watch she had open ends."""
    async with _served(tmp_path) as (app, channel):
        tasks = ts_grpc.TaskServiceStub(channel)
        queued = (
            await tasks.Submit(ts.SubmitRequest(call=_upper("queued")), metadata=ALICE)
        ).task_id
        watch = tasks.WatchTasks(ts.WatchTasksRequest(task_ids=[queued]), metadata=ALICE)
        update = await watch.read()
        assert isinstance(update, ts.WatchTasksResponse)
        assert update.task.state == pb.TASK_STATE_QUEUED
        _write(tmp_path / "clawq.toml", alice=False)
        assert await app.reload() == ""
        kept = (await tasks.Submit(ts.SubmitRequest(call=_upper("ops")), metadata=OPS)).task_id
        workers = ws_grpc.WorkerServiceStub(channel)
        request = ws.LeaseRequest(worker_id="w", tools=["uppercase"], max_tasks=10)
        leased = await workers.Lease(request, metadata=OPS)
        assert [t.task.id for t in leased.tasks] == [kept]  # in the same lease, still handed out
        [task] = await app.queue.get_many([queued], None)
        assert task.state is TaskState.FAILED
        assert task.error is not None
        assert task.error.reason == "POLICY_DENIED"
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await watch.read()
        assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED
    [record] = [r for r in _audit(tmp_path) if r.get("task_id") == queued]
    assert (record["decision"], record["outcome"]) == ("deny", "FAILED")


def _audit(tmp_path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in (tmp_path / "audit.jsonl").read_bytes().splitlines()]


async def test_a_reload_cannot_turn_authentication_off(tmp_path: Path) -> None:
    """A file without any credential is refused: tokens keep working, anonymous stays out."""
    async with _served(tmp_path) as (app, channel):
        (tmp_path / "clawq.toml").write_text(
            f'[[principals]]\nname = "ops"\nroots = [{{ path = "{tmp_path / "ws"}" }}]\n'
            "admin = true\n"
        )
        assert "cannot turn authentication off" in await app.reload()
        tasks = ts_grpc.TaskServiceStub(channel)
        await tasks.Submit(ts.SubmitRequest(call=_upper("ok")), metadata=ALICE)
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await tasks.Submit(ts.SubmitRequest(call=_upper("no")))
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_two_authorization_headers_are_refused(tmp_path: Path) -> None:
    """Which of two headers a proxy checked is unknowable: neither is taken."""
    async with _served(tmp_path) as (_, channel):
        tasks = ts_grpc.TaskServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await tasks.Submit(ts.SubmitRequest(call=_upper("x")), metadata=[*OPS, *ALICE])
        assert rich(refused.value).code == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        # alice's token given to a second principal
        (
            '\n[[principals]]\nname = "eve"\nroots = [{ path = "ws" }]\n'
            f'token_sha256 = ["{config.hash_token("alice-token")}"]\n',
            "principals.eve.token_sha256",
        ),
        ('\n[[principals]]\nname = "alice"\nroots = [{ path = "ws" }]\n', "principals.alice"),
    ],
)
def test_a_credential_or_name_given_twice_is_refused(
    tmp_path: Path, extra: str, field: str
) -> None:
    """The loader refuses a token mapping to two principals and a principal defined twice."""
    (tmp_path / "ws").mkdir()
    path = tmp_path / "clawq.toml"
    _write(path, extra=extra)
    with pytest.raises(InvalidArgument) as refused:
        config.load(path, {})
    assert [v.field for v in refused.value.violations] == [field]


def test_an_unset_token_env_leaves_authentication_on(tmp_path: Path) -> None:
    """A principal whose token_env is not set cannot log in, and nobody else gets in."""
    (tmp_path / "ws").mkdir()
    path = tmp_path / "clawq.toml"
    path.write_text('[[principals]]\nname = "a"\nroots = [{ path = "ws" }]\ntoken_env = "NOPE"\n')
    loaded = config.load(path, {})
    assert (loaded.auth.tokens, loaded.auth.required) == ({}, True)
