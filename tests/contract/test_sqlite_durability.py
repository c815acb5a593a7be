"""SQLite only: what the queue acknowledged survives the process being killed with SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import clawq_server
from clawq_server.model import TaskState
from clawq_server.queue.sqlite import SqliteQueue

# The source root clawq_server is imported from, for the child's PYTHONPATH.
SOURCE_ROOT = Path(clawq_server.__file__).resolve().parents[1]

# Four concurrent submitters, so acknowledged rows come from shared group commits.
SUBMITTER = """
import asyncio, hashlib, sys, uuid
from datetime import UTC, datetime
from clawq_server.model import NewTask, SideEffect
from clawq_server.queue.sqlite import SqliteQueue

def task():
    now = datetime.now(UTC)
    return NewTask(uuid.uuid4().hex, "alice", "read_file", b'{"path":"a"}',
                   hashlib.sha256(b"a").hexdigest(), SideEffect.READ_ONLY, "", 0, 3,
                   False, now, now)

async def submitter(queue):
    while True:
        outcomes = await queue.submit([task() for _ in range(25)])
        print(" ".join(o.task_id for o in outcomes), flush=True)

async def main():
    queue = SqliteQueue(sys.argv[1])
    await queue.start()
    await asyncio.gather(*(submitter(queue) for _ in range(4)))

asyncio.run(main())
"""


async def read_acks(stream: asyncio.StreamReader, batches: int) -> list[str]:
    """Task ids from the first batches acknowledgement lines."""
    ids: list[str] = []
    for _ in range(batches):
        line = await stream.readline()
        assert line, "the submitter exited early"
        ids.extend(line.decode().split())
    return ids


async def test_acknowledged_tasks_survive_sigkill(tmp_path: Path) -> None:
    """Every task id printed after submit() returned is in the file after kill -9."""
    db = tmp_path / "queue.db"
    env = {**os.environ, "PYTHONPATH": str(SOURCE_ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SUBMITTER,
        str(db),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    acked = await asyncio.wait_for(read_acks(proc.stdout, 40), 60)
    proc.send_signal(signal.SIGKILL)
    rest, _ = await proc.communicate()
    # A line cut short by the kill was never fully acknowledged; whole lines were.
    acked.extend(rest.decode().rpartition("\n")[0].split())
    assert proc.returncode == -signal.SIGKILL

    queue = SqliteQueue(db)
    await queue.start()
    try:
        found = await queue.get_many(acked, "alice")
        assert len(found) == len(acked) >= 1000
        assert {t.state for t in found} == {TaskState.QUEUED}
    finally:
        await queue.close()
