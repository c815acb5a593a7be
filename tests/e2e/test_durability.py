"""A task acknowledged by the server survives the server being killed with SIGKILL."""

from __future__ import annotations

import threading
from pathlib import Path

import clawq
from tests.conftest import ServerFactory
from tests.processes import ClawqProcess, start_clawq


async def _serve(tmp_path: Path, workers: int) -> ClawqProcess:
    return await start_clawq(
        "serve", "--listen", "127.0.0.1:0", "--db", str(tmp_path / "q.db"),
        "--root", str(tmp_path / "ws"), "--workers", str(workers),
    )  # fmt: skip


async def test_acknowledged_tasks_survive_kill_9(tmp_path: Path) -> None:
    """Every id returned before kill -9 is found, queued, after a restart on the same file."""
    server = await _serve(tmp_path, workers=0)
    acked: list[str] = []
    async with clawq.AsyncClient(server.target) as client:
        for i in range(20):
            acked.append(await client.submit("read_file", path=f"f{i}.txt"))
        acked += await client.submit_batch(
            [clawq.Call("list_directory", path=".") for _ in range(500)]
        )
    server.kill()
    await server.proc.wait()
    again = await _serve(tmp_path, workers=0)
    try:
        async with clawq.AsyncClient(again.target) as client:
            found = await client.get_many(acked)
        assert sorted(t.id for t in found) == sorted(acked)
        assert {t.state for t in found} == {"QUEUED"}
    finally:
        await again.stop()


async def test_sigterm_drains_in_flight_and_exits_cleanly(tmp_path: Path) -> None:
    """SIGTERM stops the server with exit status 0 after its queued reads are done or requeued."""
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "a.txt").write_text("hello")
    server = await _serve(tmp_path, workers=2)
    async with clawq.AsyncClient(server.target) as client:
        result = await client.execute("read_file", path="a.txt")
        assert result.output == "hello"
    assert await server.stop() == 0


def _file_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("clawq-files")]


async def test_shutdown_lets_file_calls_finish_and_ends_their_threads(
    server_factory: ServerFactory,
) -> None:
    """The file tools' threads are waited for at shutdown, not cut off at interpreter exit."""
    async with server_factory() as served:
        (served.root / "a.txt").write_text("hello")
        async with clawq.AsyncClient(served.target) as client:
            assert (await client.execute("read_file", path="a.txt")).output == "hello"
        running = _file_threads()
        assert running
    assert not any(thread.is_alive() for thread in running)
