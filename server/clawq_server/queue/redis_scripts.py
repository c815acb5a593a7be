"""The Redis queue's Lua scripts: each is lua/lib.lua plus one operation, sent by EVALSHA."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from importlib import resources
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from clawq_server.errors import BackendFull, BackendUnavailable
from clawq_server.queue.redis_codec import READ_FIELDS

HEALTH_CHECK_S = 10

_NAMES = (
    "submit",
    "lease",
    "complete",
    "release",
    "heartbeat",
    "cancel",
    "requeue",
    "sweep",
    "stats",
    "list",
    "tidy",
    "record",
    "get",
)


def source(name: str) -> str:
    """The full text of one script: READ_FIELDS, the shared helpers, then the operation."""
    folder = resources.files("clawq_server.queue") / "lua"
    lib = (folder / "lib.lua").read_text(encoding="utf-8")
    fields = ", ".join(f"'{field.decode()}'" for field in READ_FIELDS)
    own = (folder / f"{name}.lua").read_text(encoding="utf-8")
    return f"local READ_FIELDS = {{{fields}}}\n{lib}\n{own}"


@dataclass(frozen=True, slots=True)
class Scripts:
    """Every queue script, registered once with one client.

    Each call is one EVALSHA; redis-py loads the script again by itself if the server
    forgot it (a restart, SCRIPT FLUSH).
    """

    submit: AsyncScript
    lease: AsyncScript
    complete: AsyncScript
    release: AsyncScript
    heartbeat: AsyncScript
    cancel: AsyncScript
    requeue: AsyncScript
    sweep: AsyncScript
    stats: AsyncScript
    list: AsyncScript
    tidy: AsyncScript
    record: AsyncScript
    get: AsyncScript

    @classmethod
    def register(cls, client: Redis) -> Scripts:
        """Scripts bound to client."""
        return cls(*(client.register_script(source(name)) for name in _NAMES))


class ScriptCalls:
    """Calls one queue's scripts: its key, the arguments every script starts with, and
    errors translated (see translated())."""

    def __init__(self, base_key: str, retention: timedelta, archive: bool) -> None:
        self._keys = [base_key]
        self._common = [str(max(int(retention.total_seconds()), 1)), "1" if archive else "0"]

    async def __call__(
        self, script: AsyncScript, args: list[Any], now: float | None = None, *, read: bool = False
    ) -> Any:
        """One script call. A read is tried once more after a connection error: a pooled
        connection may be older than a Redis restart, repeating a read changes nothing, and
        a Redis that is down refuses the new connection at once."""
        stamp = repr(time.time() if now is None else now)
        call = partial(script, keys=self._keys, args=[stamp, *self._common, *args])
        with translated(write=not read):
            try:
                return await call()
            except RedisConnectionError:
                if not read:
                    raise
                return await call()


def open_pool(url: str, size: int, timeout: float) -> BlockingConnectionPool:
    """A bounded pool of health-checked, keep-alive connections that time out and are not
    retried, so an outage surfaces within the caller's deadline."""
    return BlockingConnectionPool.from_url(
        url,
        max_connections=size,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        socket_keepalive=True,
        health_check_interval=HEALTH_CHECK_S,
        retry=Retry(NoBackoff(), 0),
    )


# Replies that mean "this Redis cannot serve writes right now", not a bug. ("BUSY " with
# its space: BUSYGROUP is an answer about a consumer group.)
_UNAVAILABLE_REPLIES = (
    "LOADING", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "BUSY ", "MISCONF", "NOREPLICAS"
)  # fmt: skip
# Answers redis-py raises as connection errors although Redis refused the command.
_REFUSED = (ReadOnlyError, BusyLoadingError, AuthenticationError)
# redis-py's words for a command that never left: no connection was made or free.
_NOT_SENT = ("connecting", "No connection available")


@contextlib.contextmanager
def translated(*, write: bool = False) -> Iterator[None]:
    """Turn Redis being unreachable, loading, full or read-only into BackendUnavailable; a
    write whose reply was lost (a timeout, a connection dropped after sending) may have
    been applied."""
    try:
        yield
    except _REFUSED as exc:
        raise BackendUnavailable("the queue backend is unavailable") from exc
    except OutOfMemoryError as exc:
        raise BackendFull from exc
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        if not write or any(words in str(exc) for words in _NOT_SENT):
            raise BackendUnavailable("the queue backend is unavailable") from exc
        raise BackendUnavailable(
            "the queue backend did not answer; the request may have taken effect",
            maybe_applied=True,
        ) from exc
    except ResponseError as exc:
        if str(exc).startswith(_UNAVAILABLE_REPLIES):
            raise BackendUnavailable("the queue backend is unavailable") from exc
        raise
