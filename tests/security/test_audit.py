"""The audit log: every call recorded, secrets redacted, and any tampering detected."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

import clawq
from clawq_server.audit import REDACTED, AuditLog, Redactor, verify
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


async def test_a_record_that_cannot_be_redacted_is_written_without_its_arguments(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A redaction that fails keeps the record (arguments replaced) and its neighbours."""
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, _FailsOnMarker())
    await log.start()
    for marker in ("before", "explode", "after"):  # one batch
        log.record({"tool": "read_file", "args": {"path": marker}})
    await log.close()
    assert [r["args"] for r in _records(path)] == [{"path": "before"}, REDACTED, {"path": "after"}]
    assert "could not be redacted" in caplog.text
    assert verify(path).ok


async def test_what_json_cannot_hold_is_written_escaped(tmp_path: Path) -> None:
    """A lone surrogate (a file name that is not UTF-8) or a huge integer costs no record."""
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    await log.start()
    log.record({"tool": "a", "args": {}})
    log.record({"tool": "b", "message": "/tmp/\udcffprog", "args": {"n": 1 << 70}})
    log.record({"tool": "c", "args": {}})
    await log.close()
    records = _records(path)
    assert [r["tool"] for r in records] == ["a", "b", "c"]
    assert records[1]["message"] == "/tmp/\\udcffprog"
    assert records[1]["args"] == {"n": str(1 << 70)}
    assert verify(path).ok


@pytest.mark.parametrize("tail", [b'{"tool": "half', b""])
async def test_a_restart_after_a_cut_write_continues_the_chain(tmp_path: Path, tail: bytes) -> None:
    """A last line a crash cut short is dropped; a whole last record missing only its
    newline is kept; a last record past the tail read step is found."""
    path = tmp_path / "audit.jsonl"
    first = AuditLog(path)
    await first.start()
    first.record({"tool": "long", "args": {"text": "x" * 200_000}})
    await first.close()
    whole = path.read_bytes()
    path.write_bytes(whole + tail if tail else whole.rstrip(b"\n"))
    second = AuditLog(path)
    await second.start()
    second.record({"tool": "next", "args": {}})
    await second.close()
    assert [r["tool"] for r in _records(path)] == ["long", "next"]
    assert verify(path).ok


async def test_a_file_that_is_no_audit_log_is_left_alone(tmp_path: Path) -> None:
    """A wrong --audit-log path (text whose last line has no newline) is refused untouched,
    not cut; a FIFO (a log shipper) starts a chain of its own."""
    wrong = tmp_path / "notes.txt"
    wrong.write_bytes(b"first line\nlast line without newline")
    with pytest.raises(ValueError, match="follows no audit record"):
        await AuditLog(wrong).start()
    assert wrong.read_bytes() == b"first line\nlast line without newline"
    fifo = tmp_path / "ship"
    os.mkfifo(fifo)
    shipped = AuditLog(fifo)
    await shipped.start()
    await shipped.close()


async def test_a_refusal_naming_a_non_utf8_file_is_answered_and_audited(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """A symlink to a program whose name is not UTF-8: the refusal reaches the caller as
    PERMISSION_DENIED (not UNKNOWN) and is audited, and so is the call after it."""
    program = os.fsencode(tmp_path) + b"/\xffprog"
    shutil.copy(b"/bin/true", program)
    os.chmod(program, 0o700)
    (tmp_path / "link").symlink_to(os.fsdecode(program))
    async with server_factory() as served, clawq.AsyncClient(served.target) as client:
        with pytest.raises(clawq.PermissionDenied, match=r"\\udcffprog"):
            await client.submit("execute_command", argv=[str(tmp_path / "link")])
        with pytest.raises(clawq.PermissionDenied):
            await client.submit("read_file", path="../after")
    records = _records(tmp_path / "audit.jsonl")
    assert [r["tool"] for r in records] == ["execute_command", "read_file"]
    assert "\\udcffprog" in str(records[0]["message"])
    assert verify(tmp_path / "audit.jsonl").ok


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
