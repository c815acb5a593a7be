"""Redis for tests: the shared server (REDIS_URL or a local one) or a private redis-server."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import RedisError

from clawq_server.queue.redis import RedisQueue

LOCAL_URL = "redis://127.0.0.1:6379/0"
START_TIMEOUT_S = 10.0

# Opens a started RedisQueue; keyword arguments go to RedisQueue.
MakeRedisQueue = Callable[..., Awaitable[RedisQueue]]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def answers(url: str) -> bool:
    """True when a Redis at url answers PING."""
    client = SyncRedis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        return bool(client.ping())
    except (RedisError, OSError):
        return False
    finally:
        client.close()


class RedisServer:
    """A private redis-server subprocess on a free port, stoppable and restartable.

    With durable=True it keeps an append-only file (fsync on every write) in folder, so
    a restart brings back every acknowledged write.
    """

    def __init__(self, folder: Path, *, durable: bool = False) -> None:
        self.folder = folder
        self.port = free_port()
        self.durable = durable
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Where clients reach this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server (same port and files as before) and wait until it answers."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed; the Redis tests need it")
        self.folder.mkdir(parents=True, exist_ok=True)
        args = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(self.folder),
        ]
        if self.durable:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not answers(self.url):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server (SIGKILL when kill) and wait for it to exit."""
        if self.process is None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        self.process.wait(timeout=START_TIMEOUT_S)
        self.process = None

    def restart(self) -> None:
        """Stop and start again on the same port with the same files."""
        self.stop()
        self.start()


@contextlib.contextmanager
def redis_server(folder: Path, *, durable: bool = False) -> Iterator[RedisServer]:
    """A started private RedisServer, stopped at the end."""
    server = RedisServer(folder, durable=durable)
    server.start()
    try:
        yield server
    finally:
        server.stop(kill=True)


@contextlib.contextmanager
def shared_redis_url(tmp: Path) -> Iterator[str]:
    """REDIS_URL if set, else the local server if it answers, else a private one.

    Raises when none can be had: Redis tests fail rather than skip.
    """
    url = os.environ.get("REDIS_URL")
    if url:
        if not answers(url):
            raise RuntimeError(f"REDIS_URL {url} does not answer PING")
        yield url
    elif answers(LOCAL_URL):
        yield LOCAL_URL
    else:
        with redis_server(tmp) as server:
            yield server.url


def unique_prefix() -> str:
    """A key prefix no other test run uses."""
    return f"clawqtest-{uuid.uuid4().hex[:12]}"


async def delete_prefix(url: str, prefix: str) -> int:
    """Delete every key whose name contains the hash tag of prefix (SCAN + UNLINK)."""
    client = Redis.from_url(url)
    deleted = 0
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"*{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += await client.unlink(*batch)
                batch = []
        if batch:
            deleted += await client.unlink(*batch)
    finally:
        await client.aclose()
    return deleted


@contextlib.asynccontextmanager
async def cleaned(url: str) -> AsyncIterator[str]:
    """A fresh key prefix on url whose keys are all deleted at the end."""
    prefix = unique_prefix()
    try:
        yield prefix
    finally:
        await delete_prefix(url, prefix)
