"""An audit log that cannot be written: no record is lost, and no call is taken or run."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2, status_pb2

from clawq.v1 import task_pb2 as pb
from clawq.v1 import task_service_pb2 as ts
from clawq.v1 import task_service_pb2_grpc as ts_grpc
from clawq.v1 import worker_service_pb2 as ws
from clawq.v1 import worker_service_pb2_grpc as ws_grpc
from clawq_server.audit import MAX_FOLDED_KEYS, RETRY_S, AuditLog, verify
from tests.conftest import ServerFactory
from tests.contract.helpers import eventually
from tests.e2e.rpc import rich
from tests.processes import child_env

FULL = "/dev/full"  # every write fails with ENOSPC


def _point(link: Path, target: str | Path) -> None:
    """Atomically make link a symlink to target."""
    aside = link.with_name(link.name + ".new")
    aside.unlink(missing_ok=True)
    aside.symlink_to(target)
    aside.replace(link)


def _records(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - a file and a flag, nothing to await
            await asyncio.sleep(0.01)


async def test_records_wait_for_a_full_disk_and_are_then_written_in_order(
    tmp_path: Path,
) -> None:
    """ENOSPC keeps the records (in order, chain intact) and says not to take calls."""
    link, real = tmp_path / "audit.jsonl", tmp_path / "real.jsonl"
    _point(link, FULL)
    log = AuditLog(link)
    await log.start()
    assert log.accepting
    log.record({"tool": "read_file", "args": {"path": "one"}})
    await _until(lambda: not log.accepting)
    log.record({"tool": "read_file", "args": {"path": "two"}})
    real.touch()
    _point(link, real)
    await _until(lambda: log.accepting and b"two" in real.read_bytes(), RETRY_S + 5)
    log.record({"tool": "read_file", "args": {"path": "three"}})
    await log.close()
    assert [r["args"] for r in _records(real)] == [{"path": p} for p in ("one", "two", "three")]
    assert verify(real).ok


async def test_past_twice_the_backlog_records_are_counted_not_dropped(tmp_path: Path) -> None:
    """A flood beyond the bound is folded into one counted record per principal and reason."""
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, backlog=3)
    await log.start()
    for i in range(10):
        assert log.accepting == (i < 3)
        log.record({"principal": "p", "decision": "deny", "reason": "R", "args": {"i": i}})
    await log.close()
    records = _records(path)
    assert [r["args"] for r in records[:6]] == [{"i": i} for i in range(6)]
    assert records[6]["folded"] == 4
    assert (records[6]["principal"], records[6]["reason"]) == ("p", "R")
    assert len(records) == 7
    assert verify(path).ok


async def test_folded_counts_are_bounded_and_written_once(tmp_path: Path) -> None:
    """Kinds of folded record beyond the cap share one count; counts held back while writes
    fail are written once, not once per retry."""
    link, real = tmp_path / "audit.jsonl", tmp_path / "real.jsonl"
    _point(link, FULL)
    log = AuditLog(link, backlog=2, retry_s=0.01)
    await log.start()
    log.record({"principal": "p", "reason": "first"})
    await _until(lambda: not log.accepting)  # below the backlog: the write failed
    kept, extra = 3, 5  # up to twice the backlog is kept, then records are folded
    for i in range(kept + MAX_FOLDED_KEYS + extra):
        log.record({"principal": "p", "decision": "deny", "reason": f"R{i}"})
    await asyncio.sleep(0.2)  # some twenty failed retries
    for _ in range(3):
        log.record({"principal": "p", "decision": "deny", "reason": f"R{kept}"})
    await asyncio.sleep(0.1)
    real.touch()
    _point(link, real)
    await log.close()
    records = _records(real)
    folded = [r for r in records if "folded" in r]
    assert len(records) == 1 + kept + len(folded)
    assert len(folded) == MAX_FOLDED_KEYS + 1
    assert sum(r["folded"] for r in folded) == MAX_FOLDED_KEYS + extra + 3
    assert [r["folded"] for r in folded if r["reason"] == "*"] == [extra]
    assert [r["folded"] for r in folded if r["reason"] == f"R{kept}"] == [4]
    assert verify(real).ok


PARTIAL_WRITE = """
import asyncio, json, os, resource, signal, sys
from pathlib import Path
from typing import Any
from clawq_server.audit import AuditLog, verify

async def main(path):
    log = AuditLog(path)
    await log.start()
    log.record({"args": {"n": "small"}})
    while not path.exists() or not path.stat().st_size:
        await asyncio.sleep(0.01)
    before = path.stat().st_size
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (before + 100, hard))
    log.record({"args": {"n": "x" * 10_000}})
    while log.accepting:
        await asyncio.sleep(0.01)
    after_failure = path.stat().st_size
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    while not log.accepting:
        await asyncio.sleep(0.01)
    await log.close()
    verdict = verify(path)
    print(json.dumps([before, after_failure, verdict.ok, verdict.records]))

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
asyncio.run(main(Path(sys.argv[1])))
"""


async def test_a_write_cut_short_is_taken_back(tmp_path: Path) -> None:
    """A batch only partly written (file size limit) is truncated away and written again."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PARTIAL_WRITE, str(tmp_path / "audit.jsonl"),
        stdout=asyncio.subprocess.PIPE, env=child_env(),
    )  # fmt: skip
    async with asyncio.timeout(30):
        out, _ = await proc.communicate()
    assert proc.returncode == 0
    before, after_failure, ok, records = json.loads(out)
    assert after_failure == before  # not half a line
    assert (ok, records) == (True, 2)


@pytest.fixture
async def stubs(
    server_factory: ServerFactory, tmp_path: Path
) -> AsyncIterator[tuple[ts_grpc.TaskServiceAsyncStub, ws_grpc.WorkerServiceAsyncStub, Path]]:
    """A server whose audit path is a symlink, to the real file until a test points it away."""
    real = tmp_path / "real.jsonl"
    real.touch()
    link = tmp_path / "audit.jsonl"
    _point(link, real)
    async with (
        server_factory(workers=1, audit_path=link) as served,
        grpc.aio.insecure_channel(served.target) as channel,
    ):
        (served.root / "a.txt").write_text("hello")
        yield ts_grpc.TaskServiceStub(channel), ws_grpc.WorkerServiceStub(channel), real


def _reason(status: status_pb2.Status) -> str:
    info = error_details_pb2.ErrorInfo()
    return next((info.reason for d in status.details if d.Unpack(info)), "")


def _read(path: str, delay_s: int = 0) -> pb.ToolCall:
    return pb.ToolCall(
        tool="read_file", read_file=pb.ReadFileArgs(path=path), delay=Duration(seconds=delay_s)
    )


async def test_while_the_log_cannot_be_written_no_call_is_taken_or_run(
    stubs: tuple[ts_grpc.TaskServiceAsyncStub, ws_grpc.WorkerServiceAsyncStub, Path], tmp_path: Path
) -> None:
    """Submit, streams, Execute and Lease answer UNAVAILABLE (AUDIT_UNAVAILABLE, retry hint),
    a queued task is not leased; once the disk takes writes again everything goes on."""
    tasks, workers, real = stubs
    # Due once a lease that began waiting before the log failed (up to 1 s) has ended.
    queued = (await tasks.Submit(ts.SubmitRequest(call=_read("a.txt", delay_s=3)))).task_id
    due = time.monotonic() + 3.0
    _point(tmp_path / "audit.jsonl", FULL)
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await tasks.Submit(ts.SubmitRequest(call=_read("../outside.txt")))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED

    async def refused() -> bool:
        try:
            await tasks.Submit(ts.SubmitRequest(call=_read("a.txt")))
        except grpc.aio.AioRpcError as error:
            return rich(error).reason == "AUDIT_UNAVAILABLE"
        return False

    await eventually(refused, bool, within=10.0)
    for call in (
        tasks.Execute(ts.ExecuteRequest(call=_read("a.txt"))),
        workers.Lease(ws.LeaseRequest(worker_id="w", tools=["read_file"], max_tasks=1)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as unavailable:
            await call
        status = rich(unavailable.value)
        assert (status.code, status.reason) == (grpc.StatusCode.UNAVAILABLE, "AUDIT_UNAVAILABLE")
        assert status.retry_after
    batch = ts.SubmitStreamRequest(calls=[_read("a.txt"), _read("a.txt")])
    acks = [ack async for ack in tasks.SubmitStream(iter([batch]))]
    assert [_reason(r.error) for ack in acks for r in ack.results] == ["AUDIT_UNAVAILABLE"] * 2

    # The delayed task has been due for a good while: the worker holds back.
    await asyncio.sleep(max(0.0, due - time.monotonic()) + 0.5)
    task = (await tasks.GetTask(ts.GetTaskRequest(task_id=queued))).task
    assert task.state == pb.TASK_STATE_QUEUED

    _point(tmp_path / "audit.jsonl", real)
    waited = await tasks.WaitTask(
        ts.WaitTaskRequest(task_id=queued, timeout=Duration(seconds=int(RETRY_S) + 10))
    )
    assert waited.task.state == pb.TASK_STATE_SUCCEEDED
    await tasks.Submit(ts.SubmitRequest(call=_read("a.txt")))

    await _until(lambda: any(r.get("task_id") == queued for r in _records(real)))
    records = _records(real)
    assert verify(real).ok
    reasons = [r["reason"] for r in records if r["decision"] == "deny"]
    assert reasons[0] == "POLICY_DENIED"
    assert reasons.count("AUDIT_UNAVAILABLE") >= 3  # Submit, Execute, the stream's batch
    unaudited = next(r for r in records if r["reason"] == "AUDIT_UNAVAILABLE" and r["tool"])
    assert set(unaudited["args"]) == {"sha256", "bytes"}  # not what the caller sent


async def test_a_remote_lease_that_waited_while_the_log_failed_gives_its_tasks_back(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """A Lease waiting when the log fails gets UNAVAILABLE, and the task it would have got
    stays queued with no attempt counted."""
    real, link = tmp_path / "real.jsonl", tmp_path / "audit.jsonl"
    real.touch()
    _point(link, real)
    async with (
        server_factory(workers=0, audit_path=link) as served,
        grpc.aio.insecure_channel(served.target) as channel,
    ):
        tasks, workers = ts_grpc.TaskServiceStub(channel), ws_grpc.WorkerServiceStub(channel)
        lease = asyncio.ensure_future(
            workers.Lease(
                ws.LeaseRequest(
                    worker_id="w", tools=["read_file"], max_tasks=1, wait=Duration(seconds=10)
                )
            )
        )
        queued = (await tasks.Submit(ts.SubmitRequest(call=_read("a.txt", delay_s=1)))).task_id
        _point(link, FULL)
        with pytest.raises(grpc.aio.AioRpcError):  # its record is what finds the disk full
            await tasks.Submit(ts.SubmitRequest(call=_read("../outside.txt")))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await lease
        assert rich(refused.value).reason == "AUDIT_UNAVAILABLE"
        task = (await tasks.GetTask(ts.GetTaskRequest(task_id=queued))).task
        assert (task.state, task.attempt) == (pb.TASK_STATE_QUEUED, 0)
