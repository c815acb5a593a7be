"""Fault-test rig: a private durable redis-server and real clawq serve/worker processes."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import clawq
from clawq_server.policy.principal import DEFAULT_COMMANDS
from tests.processes import LISTENING, REPO, STARTED, child_env
from tests.redis_support import RedisServer, delete_prefix, redis_server, unique_prefix

LEASE_S = 2.0
START_TIMEOUT_S = 20.0
CHUNK = 1000  # ids per BatchGetTasks while polling


@dataclass
class Proc:
    """A clawq subprocess whose standard error goes to a log file the test can read."""

    proc: asyncio.subprocess.Process
    log: Path
    port: int = 0

    @property
    def target(self) -> str:
        """Where its gRPC server listens."""
        return f"127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        """True until the process has exited."""
        return self.proc.returncode is None

    def output(self) -> str:
        """Everything it logged so far."""
        return self.log.read_text(errors="replace")

    def pause(self, paused: bool = True) -> None:
        """SIGSTOP (or SIGCONT): freeze it where it is, holding whatever it holds."""
        if self.alive:
            self.proc.send_signal(signal.SIGSTOP if paused else signal.SIGCONT)

    async def kill(self) -> None:
        """SIGKILL, and wait until it is gone."""
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait for it to exit; the exit status."""
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), timeout)


@dataclass
class Cluster:
    """Servers and workers of one test sharing one Redis, one key prefix and one workspace."""

    redis: RedisServer
    prefix: str
    folder: Path
    procs: list[Proc] = field(default_factory=list)

    @property
    def root(self) -> Path:
        """The workspace every task reads and writes in."""
        return self.folder / "workspace"

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # The principal may also run `sh` and `sleep`: slow commands whose runs are counted.
        commands = ", ".join(f'"{c}"' for c in (*DEFAULT_COMMANDS, "sh", "sleep"))
        self.config.write_text(
            "[[principals]]\n"
            'name = "anonymous"\n'
            f'roots = [{{ path = "{self.root}", writable = true }}]\n'
            f"commands = [{commands}]\n"
            "worker = true\n"
        )

    @property
    def config(self) -> Path:
        """The TOML configuration every process of the cluster reads."""
        return self.folder / "clawq.toml"

    async def serve(self, *extra: str) -> Proc:
        """Start a `clawq serve` on a free port without in-process workers."""
        return await self._start("serve", "--listen", "127.0.0.1:0", "--workers", "0", *extra)

    async def worker(self, concurrency: int = 4, lease: float = LEASE_S) -> Proc:
        """Start a `clawq worker`."""
        return await self._start("worker", "--concurrency", str(concurrency), "--lease", str(lease))

    async def _start(self, command: str, *args: str) -> Proc:
        number = len(self.procs)
        log = self.folder / f"{command}-{number}.log"
        common = [
            "--redis-url", self.redis.url, "--redis-prefix", self.prefix,
            "--config", str(self.config),
            "--audit-log", str(self.folder / f"audit-{number}.jsonl"),
        ]  # fmt: skip
        with log.open("wb") as sink:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "clawq_server.main", command, *common, *args,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=sink, env=child_env(), cwd=str(REPO),
            )  # fmt: skip
        started = Proc(proc, log)
        self.procs.append(started)
        await wait_for(lambda: _started(started), START_TIMEOUT_S, f"{command} to start")
        return started

    async def close(self) -> None:
        """Kill every process still running."""
        for proc in self.procs:
            await proc.kill()


def _started(proc: Proc) -> bool:
    text = proc.log.read_bytes()
    if not proc.alive:
        raise RuntimeError(f"clawq exited while starting:\n{text.decode(errors='replace')}")
    if (match := LISTENING.search(text)) is not None:
        proc.port = int(match.group(1))
    return STARTED.search(text) is not None


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """A private redis-server with AOF (fsync always) and the clawq processes a test starts."""
    with redis_server(tmp_path / "redis", durable=True) as redis:
        rig = Cluster(redis, unique_prefix(), tmp_path)
        try:
            yield rig
        finally:
            await rig.close()
            if redis.process is not None:
                await delete_prefix(redis.url, rig.prefix)


async def wait_for(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float, what: str
) -> None:
    """Re-check condition every 20 ms until it holds; fail naming what after timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = condition()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


async def fetch(client: clawq.AsyncClient, ids: Sequence[str]) -> dict[str, clawq.Task]:
    """The tasks with these ids that exist, by id (BatchGetTasks in chunks)."""
    found: dict[str, clawq.Task] = {}
    for start in range(0, len(ids), CHUNK):
        for task in await client.get_many(ids[start : start + CHUNK]):
            found[task.id] = task
    return found


async def settle(
    client: clawq.AsyncClient, ids: Sequence[str], timeout: float
) -> dict[str, clawq.Task]:
    """Every task once all are terminal; fails if one is missing or still live at timeout."""
    final: dict[str, clawq.Task] = {}
    live = list(dict.fromkeys(ids))
    deadline = time.monotonic() + timeout
    while live:
        found = await fetch(client, live)
        missing = [i for i in live if i not in found]
        assert not missing, f"{len(missing)} acknowledged tasks are gone, e.g. {missing[:3]}"
        final.update({i: t for i, t in found.items() if t.done})
        live = [i for i in live if not found[i].done]
        if live and time.monotonic() > deadline:
            states = sorted({found[i].state for i in live})
            raise AssertionError(f"{len(live)} tasks still {states} after {timeout} s")
        if live:
            await asyncio.sleep(0.1)
    return final


def lines(path: Path) -> int:
    """How many times an append-mode write of one line ran against path (0 if never)."""
    return len(path.read_text().splitlines()) if path.exists() else 0


def append_once_then(name: str, seconds: float) -> list[str]:
    """argv that appends a line to name, sleeps on its first run only, prints the run count.

    The sleep keeps the first run busy long enough to kill or stall around it; a rerun
    finishes at once so a retried task can succeed.
    """
    script = f'echo x >> {name}; n=$(wc -l < {name}); [ "$n" -gt 1 ] || sleep {seconds}; echo $n'
    return ["sh", "-c", script]
