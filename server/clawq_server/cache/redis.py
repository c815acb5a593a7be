"""The Redis entry store: results shared by every server and worker, with TTLs and figures.

Entries are bytes (a JSON header, then the raw output and stderr; never pickle) under
``{prefix:cache}:e:<key>`` with the tool's TTL. An index hash (key -> tool, bytes, path,
expiry) and one set per path make invalidation by path, prefix and pattern possible. Hit and
miss counts are added up in process and flushed to a hash at most once a second, so a hit
costs one GET. Redis bounds the cache through TTLs and its own maxmemory policy.

A Redis failure never fails a call: a lookup becomes a miss and a store is skipped. Only the
admin operations (stats, clear, invalidate) report BackendUnavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import struct
import time
from collections import Counter
from collections.abc import AsyncIterator, Collection, Iterator
from typing import Any

import orjson
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from clawq_server.cache.base import Entry, path_matches
from clawq_server.cache.control import ToolCacheStats
from clawq_server.cache.keys import CacheKeys
from clawq_server.errors import BackendUnavailable
from clawq_server.model import ToolResult

log = logging.getLogger(__name__)
_MAGIC = b"CQ1"
_LEN = struct.Struct("<I")
FLUSH_INTERVAL_S = 1.0
TIDY_CHUNK = 500  # index fields compared and deleted per script call
# HDEL of each ARGV field whose value is still the ARGV value after it.
_HDEL_UNCHANGED = """
local removed = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    removed = removed + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return removed
"""


def encode(entry: Entry, ttl_ms: int) -> bytes:
    """An entry stored for ttl_ms as bytes: magic, header length, JSON header, output, stderr."""
    r = entry.result
    header = orjson.dumps(
        {
            "key": entry.key, "tool": entry.tool, "kind": entry.kind, "path": entry.path,
            "size": entry.size, "root": entry.root_id, "stamp": entry.stamp,
            "digest": entry.digest, "id": entry.id, "truncated": r.truncated,
            "stderr_truncated": r.stderr_truncated, "exit_code": r.exit_code,
            "signal": r.signal, "payload": r.payload, "output": len(r.output),
            "ttl_ms": ttl_ms,
        }
    )  # fmt: skip
    return b"".join((_MAGIC, _LEN.pack(len(header)), header, r.output, r.stderr))


def decode(data: bytes, left_ms: int) -> Entry | None:
    """The entry encoded in data with left_ms of its TTL left; None for another format."""
    if not data.startswith(_MAGIC):
        return None
    (length,) = _LEN.unpack_from(data, len(_MAGIC))
    start = len(_MAGIC) + _LEN.size
    h = orjson.loads(data[start : start + length])
    body = start + length
    cut = body + int(h["output"])
    result = ToolResult(
        output=data[body:cut],
        truncated=h["truncated"],
        stderr=data[cut:],
        stderr_truncated=h["stderr_truncated"],
        exit_code=h["exit_code"],
        signal=h["signal"],
        payload=h["payload"],
        cached=True,
    )
    stamp = tuple(h["stamp"]) if h["stamp"] is not None else None
    root = tuple(h["root"])
    return Entry(
        h["key"], h["tool"], h["kind"], h["path"], result, h["size"],
        (root[0], root[1]), stamp, h["digest"], h["id"], _age(h.get("ttl_ms"), left_ms),
    )  # fmt: skip


def _age(ttl_ms: int | None, left_ms: int) -> float:
    """Seconds since the entry was stored; infinite when that cannot be known."""
    if ttl_ms is None or left_ms < 0:
        return math.inf
    return max(ttl_ms - left_ms, 0) / 1000


def _raw(value: bytes | str) -> bytes:
    """Replies are bytes (no decode_responses); the client's stubs also allow str."""
    return value if isinstance(value, bytes) else value.encode()


@contextlib.contextmanager
def _unavailable() -> Iterator[None]:
    try:
        yield
    except (RedisError, OSError) as error:
        raise BackendUnavailable("the cache backend is unavailable") from error


class RedisStore:
    """Entries in Redis under one prefix, shared by every process that uses the prefix."""

    shared = True

    def __init__(
        self, url: str, *, prefix: str = "clawq", pool_size: int = 16, timeout_s: float = 2.0
    ) -> None:
        self.keys = CacheKeys(prefix)
        self._pool = BlockingConnectionPool.from_url(
            url,
            max_connections=pool_size,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            socket_keepalive=True,
        )
        self._client = Redis(connection_pool=self._pool)
        self._counts: Counter[str] = Counter()
        self._flushed = time.monotonic()
        self._flusher: asyncio.Task[None] | None = None
        self._drop_unchanged = self._client.register_script(_HDEL_UNCHANGED)

    async def get(self, key: str) -> Entry | None:
        """The entry under key; None when missing, expired or Redis is unreachable."""
        name = self.keys.entry(key)
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.get(name)
                pipe.pttl(name)
                data, left_ms = await pipe.execute()
        except (RedisError, OSError) as error:
            log.warning("cache lookup failed: %s", error)
            return None
        return decode(_raw(data), int(left_ms)) if data is not None else None

    async def put(self, entry: Entry, ttl_s: float) -> None:
        """Store entry with a TTL, indexed by key and by the path it read."""
        ttl_ms = max(int(ttl_s * 1000), 1)
        meta = orjson.dumps([entry.tool, entry.size, entry.path, time.time() + ttl_s])
        path_key = self.keys.path(entry.path)
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.set(self.keys.entry(entry.key), encode(entry, ttl_ms), px=ttl_ms)
                pipe.hset(self.keys.index, entry.key, meta)
                pipe.sadd(path_key, entry.key)
                pipe.pexpire(path_key, ttl_ms, gt=True)
                pipe.pexpire(path_key, ttl_ms, nx=True)
                await pipe.execute()
        except (RedisError, OSError) as error:
            log.warning("cache store failed: %s", error)

    async def drop(self, keys: Collection[str]) -> int:
        """Remove the entries under keys, their index fields and path memberships."""
        keys = list(keys)
        if not keys:
            return 0
        with _unavailable():
            metas = await self._client.hmget(self.keys.index, keys)
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(*(self.keys.entry(k) for k in keys))
                pipe.hdel(self.keys.index, *keys)
                for key, meta in zip(keys, metas, strict=True):
                    if meta is not None:
                        pipe.srem(self.keys.path(orjson.loads(meta)[2]), key)
                removed: int = (await pipe.execute())[0]
        return removed

    async def drop_paths(self, exact: Collection[str], under: str) -> int:
        """Remove entries reading one of exact, or anything under under."""
        with _unavailable():
            async with self._client.pipeline(transaction=False) as pipe:
                for path in exact:
                    pipe.smembers(self.keys.path(path))
                members = await pipe.execute()
        keys = {k.decode() for group in members for k in group}
        if under:
            keys.update([k async for k, meta in self._index() if path_matches(meta[2], under, "")])
        return await self.drop(keys)

    async def drop_where(self, prefix: str, pattern: str) -> int:
        """Remove entries whose path is under prefix or matches pattern."""
        keys = [key async for key, meta in self._index() if path_matches(meta[2], prefix, pattern)]
        return await self.drop(keys)

    async def clear(self) -> int:
        """Remove every entry of this prefix."""
        return await self.drop([key async for key, _ in self._index()])

    def count(self, tool: str, *, hit: bool) -> None:
        """Count a hit or miss; flushed to Redis in the background at most once a second."""
        self._counts[f"{tool}:{'hits' if hit else 'misses'}"] += 1
        due = time.monotonic() - self._flushed >= FLUSH_INTERVAL_S
        if due and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.create_task(self._flush_quietly(), name="clawq-cache-stats")

    async def stats(self) -> list[ToolCacheStats]:
        """Figures per tool across every process: counts from the hash, sizes from the index."""
        with _unavailable():
            await self._flush()
            raw = await self._client.hgetall(self.keys.stats)
            figures: dict[str, dict[str, int]] = {}
            for field, value in raw.items():
                tool, _, name = _raw(field).decode().rpartition(":")
                figures.setdefault(tool, {})[name] = int(value)
            async for _, meta in self._index():
                own = figures.setdefault(meta[0], {})
                own["entries"] = own.get("entries", 0) + 1
                own["bytes"] = own.get("bytes", 0) + int(meta[1])
        return [
            ToolCacheStats(
                tool=tool, hits=f.get("hits", 0), misses=f.get("misses", 0),
                bytes=f.get("bytes", 0), entries=f.get("entries", 0),
            )
            for tool, f in sorted(figures.items())
        ]  # fmt: skip

    async def close(self) -> None:
        """Flush the counts and close every connection."""
        if self._flusher is not None:
            await self._flusher
        await self._flush_quietly()
        await self._client.aclose()
        await self._pool.disconnect()

    async def _index(self) -> AsyncIterator[tuple[str, list[Any]]]:
        """Every live index field as (key, [tool, bytes, path, expires_at]); expired ones go."""
        now = time.time()
        expired: list[bytes] = []
        with _unavailable():
            async for field, meta in self._client.hscan_iter(self.keys.index, count=1000):
                decoded = orjson.loads(meta)
                if decoded[3] <= now:
                    expired += (field, meta)
                else:
                    yield field.decode(), decoded
            # Only fields still holding the expired value: a put since may have renewed one.
            # In chunks, so no one script holds Redis for long.
            for start in range(0, len(expired), 2 * TIDY_CHUNK):
                chunk = expired[start : start + 2 * TIDY_CHUNK]
                await self._drop_unchanged(keys=[self.keys.index], args=chunk)

    async def _flush(self) -> None:
        counts, self._counts = self._counts, Counter()
        self._flushed = time.monotonic()
        if not counts:
            return
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for field, n in counts.items():
                    pipe.hincrby(self.keys.stats, field, n)
                await pipe.execute()
        except BaseException:
            self._counts.update(counts)  # kept for the next flush
            raise

    async def _flush_quietly(self) -> None:
        try:
            await self._flush()
        except (RedisError, OSError) as error:
            log.warning("cache statistics not flushed: %s", error)
