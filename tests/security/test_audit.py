"""The audit log: every call recorded, secrets redacted, and any tampering detected."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

import clawq
from clawq_server.audit import AuditLog, Redactor, verify
from tests.conftest import ServerFactory
from tests.processes import child_env


def _records(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


async def test_allowed_and_denied_calls_are_audited(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """A refused call and an executed call each leave a record with decision and outcome."""
    async with server_factory() as served:
        (served.root / "a.txt").write_text("hi")
        async with clawq.AsyncClient(served.target) as client:
            await client.execute("read_file", path="a.txt")
            with pytest.raises(clawq.PermissionDenied):
                await client.submit("read_file", path="../outside.txt")
    records = _records(tmp_path / "audit.jsonl")
    denied = [r for r in records if r["decision"] == "deny"]
    allowed = [r for r in records if r["decision"] == "allow"]
    assert denied[0]["args"] == {"path": "../outside.txt"}
    assert denied[0]["reason"] == "POLICY_DENIED"
    assert allowed[0]["outcome"] == "SUCCEEDED"
    assert allowed[0]["task_id"]
    assert verify(tmp_path / "audit.jsonl").ok


class _FailsOnMarker(Redactor):
    def __call__(self, value: object, key: str = "") -> object:
        if value == "explode":
            raise RuntimeError("redaction failed")
        return super().__call__(value, key)


async def test_a_batch_that_cannot_be_written_does_not_stop_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The writer logs a batch it cannot write and goes on; the chain stays intact."""
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, _FailsOnMarker())
    await log.start()
    log.record({"tool": "read_file", "args": {"path": "before"}})
    await _until(lambda: path.exists() and b"before" in path.read_bytes())
    log.record({"tool": "read_file", "args": {"path": "explode"}})
    await _until(lambda: "could not be written" in caplog.text)
    log.record({"tool": "read_file", "args": {"path": "after"}})
    await log.close()
    assert [r["args"] for r in _records(path)] == [{"path": "before"}, {"path": "after"}]
    assert verify(path).ok


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - a file and a log, nothing to await
            await asyncio.sleep(0.01)


async def test_secrets_are_redacted(tmp_path: Path) -> None:
    """Env values, secret-named keys and token-looking text never reach the file."""
    log = AuditLog(tmp_path / "audit.jsonl", Redactor([r"hunter\d"]))
    await log.start()
    log.record(
        {
            "tool": "execute_command",
            "args": {
                "argv": ["curl", "-H", "Authorization: Bearer abc.def.ghi", "hunter2"],
                "env": {"API_TOKEN": "s3cr3t-value"},
                "password": "pw-value",
            },
        }
    )
    await log.close()
    text = (tmp_path / "audit.jsonl").read_text()
    for secret in ("abc.def.ghi", "s3cr3t-value", "pw-value", "hunter2"):
        assert secret not in text


async def _write_log(path: Path, count: int) -> None:
    log = AuditLog(path)
    await log.start()
    for i in range(count):
        log.record({"tool": "read_file", "args": {"path": f"f{i}"}, "decision": "allow"})
    await log.close()


@pytest.mark.parametrize("tamper", ["edit", "remove", "reorder"])
async def test_verify_names_the_first_tampered_line(tmp_path: Path, tamper: str) -> None:
    """Editing, removing or swapping a line breaks the chain at that line."""
    path = tmp_path / "audit.jsonl"
    await _write_log(path, 6)
    assert verify(path).ok
    lines = path.read_bytes().splitlines(keepends=True)
    if tamper == "edit":
        lines[2] = lines[2].replace(b"f2", b"f9")
    elif tamper == "remove":
        del lines[2]
    else:
        lines[2], lines[3] = lines[3], lines[2]
    path.write_bytes(b"".join(lines))
    verdict = verify(path)
    assert not verdict.ok
    assert verdict.bad_line == 3


async def test_chain_continues_across_restarts(tmp_path: Path) -> None:
    """A reopened log links its first new record to the last old one."""
    path = tmp_path / "audit.jsonl"
    await _write_log(path, 2)
    await _write_log(path, 2)
    assert verify(path).records == 4


async def test_clawq_audit_verify_command(tmp_path: Path) -> None:
    """`clawq audit verify` exits 0 on an intact log and 1 naming the bad line otherwise."""
    path = tmp_path / "audit.jsonl"
    await _write_log(path, 3)

    async def run() -> tuple[int, bytes]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "clawq_server.main",
            "audit",
            "verify",
            str(path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=child_env(),
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
        return proc.returncode or 0, out

    code, out = await run()
    assert code == 0, out
    path.write_bytes(path.read_bytes().replace(b"f1", b"fX"))
    code, out = await run()
    assert code == 1
    assert b"line 2" in out


async def test_a_call_answered_from_the_cache_is_audited(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """An Execute served from the cache still leaves a record, marked cached."""
    async with server_factory() as served:
        (served.root / "c.txt").write_text("cached")
        async with clawq.AsyncClient(served.target) as client:
            deadline = asyncio.get_running_loop().time() + 5
            while not (await client.execute("read_file", path="c.txt")).cached:
                assert asyncio.get_running_loop().time() < deadline
    cached = [r for r in _records(tmp_path / "audit.jsonl") if r.get("cached")]
    assert cached
    assert cached[0]["decision"] == "allow"
    assert cached[0]["args"] == {"path": "c.txt", "offset": 0, "limit": 0}
    assert verify(tmp_path / "audit.jsonl").ok
