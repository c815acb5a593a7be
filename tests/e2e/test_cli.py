"""The `clawq` command as real subprocesses against a real clawq server."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PYTHONPATH = os.pathsep.join([str(REPO / "client"), str(REPO / "server")])


@dataclass(frozen=True)
class Run:
    """The outcome of one clawq command."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


async def clawq(
    *args: str,
    target: str | None = None,
    pythonpath: str = PYTHONPATH,
    extra_env: dict[str, str] | None = None,
) -> Run:
    """Run `python -m clawq.cli ARGS` without blocking the server's event loop."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAWQ_")}
    env.update(PYTHONPATH=pythonpath, **(extra_env or {}))
    argv = [*args, "--target", target] if target else list(args)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "clawq.cli",
        *argv,
        env=env,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


def assert_one_line_error(run: Run, *needles: str) -> None:
    """A failure is reported on one stderr line, without a traceback."""
    assert "Traceback" not in run.err
    assert len(run.err.strip().splitlines()) == 1, run.err
    for needle in needles:
        assert needle in run.err


async def test_exec_prints_output(served: Any) -> None:
    """exec prints the tool's output and exits 0."""
    (served.root / "hello.txt").write_text("hello\n")
    run = await clawq("exec", "read_file", "path=hello.txt", target=served.target)
    assert (run.code, run.out) == (0, "hello\n")


async def test_exec_json_and_at_file(served: Any, tmp_path: Path) -> None:
    """key=@file sends a file's text; --json prints the result as JSON."""
    source = tmp_path / "content.txt"
    source.write_text("from a file")
    run = await clawq(
        "exec", "write_file", "path=w.txt", f"content=@{source}", "--json", target=served.target
    )
    assert run.code == 0, run.err
    assert (served.root / "w.txt").read_text() == "from a file"
    run = await clawq("--json", "exec", "read_file", "path=w.txt", target=served.target)
    assert run.json()["output"] == "from a file"
    assert run.json()["task_id"]


async def test_exec_failed_task_exits_1(served: Any) -> None:
    """A failed task exits 1 with a one-line message naming its reason."""
    run = await clawq("exec", "read_file", "path=missing.txt", target=served.target)
    assert run.code == 1
    assert_one_line_error(run, "FAILED")
    run = await clawq("exec", "read_file", "path=missing.txt", "--json", target=served.target)
    assert run.code == 1
    assert run.json()["state"] == "FAILED"
    assert run.json()["error"]["reason"]


async def test_unknown_tool_exits_2_with_reason(served: Any) -> None:
    """An unknown tool exits 2 with one line mentioning TOOL_NOT_FOUND and no traceback."""
    run = await clawq("exec", "no_such_tool", "x=1", target=served.target)
    assert run.code == 2
    assert_one_line_error(run, "TOOL_NOT_FOUND")
    run = await clawq("exec", "no_such_tool", "--json", target=served.target)
    assert run.json()["error"]["reason"] == "TOOL_NOT_FOUND"


async def test_bad_argument_exits_2_naming_it(served: Any) -> None:
    """A misspelled argument exits 2 with the field named on one line."""
    run = await clawq("exec", "read_file", "path=x", "paht=x", target=served.target)
    assert run.code == 2
    assert_one_line_error(run, "paht")


async def test_usage_errors_exit_2() -> None:
    """Missing arguments, a malformed key=value and an unknown command exit 2 on one line."""
    for args in (["exec"], ["exec", "read_file", "novalue"], ["frobnicate"], ["dead", "requeue"]):
        run = await clawq(*args, target="127.0.0.1:1")
        assert run.code == 2, args
        assert_one_line_error(run)


async def test_unreachable_server_exits_2() -> None:
    """No server at the target exits 2 with UNAVAILABLE on one line."""
    run = await clawq("tools", target="127.0.0.1:1")
    assert run.code == 2
    assert_one_line_error(run, "UNAVAILABLE")


async def test_submit_get_wait(served: Any) -> None:
    """submit prints an id that get shows and wait sees succeed."""
    (served.root / "a.txt").write_text("a")
    run = await clawq("submit", "read_file", "path=a.txt", "--priority", "3", target=served.target)
    assert run.code == 0, run.err
    task_id = run.out.strip()
    run = await clawq("wait", task_id, "--timeout", "10", "--json", target=served.target)
    assert run.code == 0, run.err
    assert run.json()["state"] == "SUCCEEDED"
    assert run.json()["priority"] == 3
    run = await clawq("get", task_id, target=served.target)
    assert run.code == 0
    assert task_id in run.out
    assert "SUCCEEDED" in run.out


async def test_submit_options_wait_timeout_and_cancel(served: Any) -> None:
    """A delayed task is still queued when wait times out (exit 1) and cancel cancels it."""
    run = await clawq(
        "submit",
        "read_file",
        "path=a.txt",
        "--delay",
        "300",
        "--idempotency-key",
        "cli-key",
        "--idempotent",
        "--json",
        target=served.target,
    )
    task_id = run.json()["task_id"]
    run = await clawq("wait", task_id, "--timeout", "0.2", "--json", target=served.target)
    assert run.code == 1
    assert (run.json()["state"], run.json()["idempotency_key"]) == ("QUEUED", "cli-key")
    run = await clawq("cancel", task_id, "--json", target=served.target)
    assert run.json()["state"] == "CANCELLED"
    run = await clawq("cancel", task_id, target=served.target)
    assert run.code == 2
    assert_one_line_error(run, "FAILED_PRECONDITION")


async def test_get_unknown_task_exits_2(served: Any) -> None:
    """get of an unknown id exits 2 with NOT_FOUND."""
    run = await clawq("get", "0" * 26, target=served.target)
    assert run.code == 2
    assert_one_line_error(run, "NOT_FOUND")


async def test_tasks_lists_with_filters(served: Any) -> None:
    """tasks lists the newest tasks, filtered by tool and state, up to --limit."""
    for i in range(3):
        await clawq("submit", "read_file", f"path=t{i}", "--delay", "300", target=served.target)
    run = await clawq("tasks", "--limit", "2", "--json", target=served.target)
    assert len(run.json()) == 2
    run = await clawq("tasks", "--state", "queued", "--tool", "read_file", target=served.target)
    assert run.code == 0
    assert run.out.count("QUEUED") == 3
    run = await clawq("tasks", "--tool", "list_directory", "--json", target=served.target)
    assert run.json() == []


async def test_tools(served: Any) -> None:
    """tools lists the tools as a table and as JSON with schemas."""
    run = await clawq("tools", target=served.target)
    assert run.code == 0
    assert "read_file" in run.out
    run = await clawq("tools", "--json", target=served.target)
    names = {t["name"] for t in run.json()}
    assert {"read_file", "write_file", "list_directory", "delete_file"} <= names


async def test_cache_queue_dead_commands(served: Any) -> None:
    """cache, queue and dead answer, in text and JSON; bad combinations exit 2."""
    run = await clawq("cache", "stats", "--json", target=served.target)
    assert "enabled" in run.json()
    assert (await clawq("cache", "stats", target=served.target)).code == 0
    assert "removed" in (await clawq("cache", "clear", "--json", target=served.target)).json()
    run = await clawq("cache", "invalidate", "--prefix", "sub", target=served.target)
    assert run.code == 0
    assert run.out.startswith("removed")
    run = await clawq("cache", "invalidate", target=served.target)
    assert run.code == 2
    assert_one_line_error(run)
    run = await clawq("queue", "stats", "--json", target=served.target)
    assert run.json()["dead"] == 0
    assert (await clawq("queue", "stats", target=served.target)).code == 0
    assert (await clawq("dead", "list", "--json", target=served.target)).json() == []
    run = await clawq("dead", "requeue", "--all", "--json", target=served.target)
    assert run.json() == {"requeued": 0}


async def test_submit_file(served: Any, tmp_path: Path) -> None:
    """submit-file streams every line; rejected lines are counted and make it exit 1."""
    good = tmp_path / "good.jsonl"
    good.write_text(
        "".join(
            json.dumps({"tool": "read_file", "args": {"path": f"g{i}"}, "delay": 300}) + "\n"
            for i in range(30)
        )
    )
    run = await clawq("submit-file", str(good), "--batch-size", "7", target=served.target)
    assert run.code == 0, run.err
    assert run.out.strip() == "accepted 30 (0 existing), rejected 0"
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(
        '{"tool": "read_file", "args": {"path": "m"}, "idempotency_key": "m1", "delay": 300}\n'
        '{"tool": "no_such_tool", "args": {}}\n'
        "not json\n"
        "\n"
        '{"tool": "read_file", "args": {"path": "m"}, "idempotency_key": "m1", "delay": 300}\n'
    )
    run = await clawq("submit-file", str(mixed), "--json", target=served.target)
    assert run.code == 1
    summary = run.json()
    assert (summary["accepted"], summary["existing"], summary["rejected"]) == (2, 1, 2)
    assert sorted(e["line"] for e in summary["errors"]) == [2, 3]
    run = await clawq("submit-file", str(mixed), target=served.target)
    assert "line 2:" in run.err
    assert "TOOL_NOT_FOUND" in run.err
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(
        b'{"tool": "read_file", "args": {"path": "\xff"}}\n'
        + good.read_bytes().splitlines(keepends=True)[0]
    )
    run = await clawq("submit-file", str(binary), "--json", target=served.target)
    assert run.code == 1
    assert "Traceback" not in run.err
    assert (run.json()["accepted"], [e["line"] for e in run.json()["errors"]]) == (1, [1])


async def test_target_from_environment(served: Any) -> None:
    """CLAWQ_TARGET picks the server when --target is not given."""
    run = await clawq("tools", "--json", extra_env={"CLAWQ_TARGET": served.target})
    assert run.code == 0, run.err
    assert "read_file" in {t["name"] for t in run.json()}


@pytest.mark.parametrize("command", ["serve", "worker", "audit"])
async def test_server_commands_need_the_server_package(command: str, tmp_path: Path) -> None:
    """Without clawq_server installed, server commands say what to install and exit 2."""
    # Shadow the (editable-installed) server package with one that cannot be imported.
    (tmp_path / "clawq_server.py").write_text("raise ImportError('not installed')\n")
    run = await clawq(command, "--help", pythonpath=f"{tmp_path}{os.pathsep}{REPO / 'client'}")
    assert run.code == 2
    assert "install clawq[server]" in run.err


async def test_audit_verify_is_forwarded(served: Any) -> None:
    """`clawq audit verify FILE` runs the server's verifier on the audit log."""
    (served.root / "v.txt").write_text("v")
    assert (await clawq("exec", "read_file", "path=v.txt", target=served.target)).code == 0
    log = served.db.parent / "audit.jsonl"
    deadline = asyncio.get_running_loop().time() + 10
    # The log is written by the server's audit task: poll the file, bounded by the deadline.
    while (  # noqa: ASYNC110 - no event to wait on for a file another component writes
        not (log.exists() and log.stat().st_size) and asyncio.get_running_loop().time() < deadline
    ):
        await asyncio.sleep(0.05)
    run = await clawq("audit", "verify", str(log))
    assert run.code == 0, run.err
    broken = served.db.parent / "broken.jsonl"
    lines = log.read_text().splitlines()
    broken.write_text("\n".join([lines[0].replace('"', "'", 2), *lines[1:]]) + "\n")
    assert (await clawq("audit", "verify", str(broken))).code != 0
