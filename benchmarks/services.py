"""The processes a benchmark run starts: a private redis-server, clawq servers and workers."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis

from benchmarks.harness import Figure, Sizes
from tests.processes import ClawqProcess, child_env, start_clawq

REPO = Path(__file__).resolve().parent.parent
_counter = itertools.count()


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Context:
    """What every benchmark group gets: sizes, a scratch dir, the private Redis, a workspace."""

    sizes: Sizes
    tmp: Path
    redis_url: str
    root: Path
    echo_target: str = ""
    notes: list[str] = field(default_factory=list)

    def scratch(self, name: str) -> Path:
        """A fresh directory under tmp."""
        path = self.tmp / f"{name}-{next(_counter)}"
        path.mkdir(parents=True)
        return path

    def flush_redis(self) -> None:
        """Empty the private Redis between figures (never the shared one)."""
        with redis.Redis.from_url(self.redis_url) as client:
            client.flushall()


@contextlib.asynccontextmanager
async def private_redis(tmp: Path) -> AsyncIterator[str]:
    """A redis-server of our own on a free port, AOF on with fsync every second."""
    port = free_port()
    data = tmp / "redis"
    data.mkdir()
    proc = await asyncio.create_subprocess_exec(
        "redis-server",
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(data),
        "--save", "",
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--auto-aof-rewrite-percentage", "0",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    try:
        await _until_ping(url)
        yield url
    finally:
        proc.terminate()
        await proc.wait()


async def _until_ping(url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    client = redis.Redis.from_url(url)
    try:
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
    finally:
        client.close()


def server_args(
    ctx: Context, backend: str, workers: int, config: Path | None = None, prefix: str = ""
) -> list[str]:
    """`clawq serve` arguments on a free port: backend "sqlite" (fresh file) or "redis"."""
    where = ctx.scratch("server")
    args = ["serve", "--listen", "127.0.0.1:0", "--workers", str(workers)]
    args += ["--audit-log", str(where / "audit.jsonl"), *backend_args(ctx, backend, where, prefix)]
    return args + (["--config", str(config)] if config is not None else [])


def backend_args(ctx: Context, backend: str, where: Path, prefix: str = "") -> list[str]:
    """The root plus a fresh SQLite file in where, or the private Redis under a prefix."""
    args = ["--root", str(ctx.root)]
    if backend == "sqlite":
        return [*args, "--db", str(where / "clawq.db")]
    return [*args, "--redis-url", ctx.redis_url, "--redis-prefix", prefix or where.name]


def worker_args(
    ctx: Context, prefix: str, concurrency: int, config: Path | None = None
) -> list[str]:
    """`clawq worker` arguments against the private Redis under prefix."""
    where = ctx.scratch("worker")
    args = ["worker", "--concurrency", str(concurrency), "--audit-log", str(where / "audit.jsonl")]
    args += backend_args(ctx, "redis", where, prefix)
    return args + (["--config", str(config)] if config is not None else [])


def no_cache_config(ctx: Context) -> Path:
    """A config file that turns the result cache off."""
    path = ctx.scratch("config") / "clawq.toml"
    path.write_text("[cache]\nenabled = false\n")
    return path


@contextlib.asynccontextmanager
async def clawq(args: Sequence[str]) -> AsyncIterator[ClawqProcess]:
    """A clawq subprocess, stopped (then killed) on exit."""
    process = await start_clawq(*args, timeout=60.0)
    try:
        yield process
    finally:
        try:
            await process.stop(timeout=10.0)
        except TimeoutError:
            process.kill()
            await process.proc.wait()


@contextlib.asynccontextmanager
async def python_process(module: str, *args: str, ready: bytes) -> AsyncIterator[str]:
    """`python -m module args`; yields the first stdout line starting with ready."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, *args,
        stdout=asyncio.subprocess.PIPE,
        env=child_env(PYTHONPATH=f"{REPO}:{REPO / 'client'}:{REPO / 'server'}"),
        cwd=str(REPO),
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(30):
            while not (line := await proc.stdout.readline()).startswith(ready):
                if not line:
                    raise RuntimeError(f"{module} exited before it was ready")
        yield line.decode().strip()
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


def rss(pid: int) -> int:
    """pid's resident set size in bytes (0 once it has exited)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


@contextlib.asynccontextmanager
async def rss_sampler(pid: int, interval: float = 0.1) -> AsyncIterator[list[int]]:
    """Samples pid's resident set size (bytes) into the yielded list until exit."""
    samples: list[int] = []

    async def sample() -> None:
        while True:
            samples.append(rss(pid))
            await asyncio.sleep(interval)

    task = asyncio.get_running_loop().create_task(sample())
    try:
        yield samples
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        samples.append(rss(pid))


@dataclass(frozen=True)
class Group:
    """Figures measured together; on failure each name becomes an error line."""

    names: tuple[str, ...]
    run: Callable[[Context], Awaitable[list[Figure]]]
