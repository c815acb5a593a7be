"""The Redis queue's feed of finished tasks: a stream read by the archivers' consumer group.

The scripts that finish tasks append one entry per call (field ``ids``: the finished ids,
space-separated) when the queue runs with archive=True. An archiver takes entries, copies
the tasks, then acknowledges and deletes the entries; entries taken by an archiver that
died are claimed by another after claim_idle, so a crash between copy and acknowledgement
only copies again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from clawq_server.queue.redis_scripts import translated

# (stream entry id, finished task ids)
FeedEntry = tuple[bytes, list[str]]


@dataclass(frozen=True, slots=True)
class ArchiveFeed:
    """Reads the finished-task stream of one queue as one consumer group.

    Every archiver of a queue must use the same group: each entry is handed to one of
    them and deleted once copied.
    """

    client: Redis
    stream: str
    group: str = "archive"

    async def open(self) -> None:
        """Create the stream and the group if missing."""
        with translated():
            try:
                await self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def take(self, consumer: str, count: int, claim_idle_ms: int) -> list[FeedEntry]:
        """Entries left by a stalled archiver first, then new ones; at most count."""
        with translated():
            claimed = await self.client.xautoclaim(
                self.stream, self.group, consumer, claim_idle_ms, "0-0", count=count
            )
            entries = list(claimed[1])
            if len(entries) < count:
                fresh: Any = await self.client.xreadgroup(
                    self.group, consumer, {self.stream: ">"}, count=count - len(entries)
                )
                for _, items in fresh:
                    entries.extend(items)
        return [(entry_id, _ids(fields)) for entry_id, fields in entries if fields]

    async def done(self, entry_ids: Sequence[bytes]) -> None:
        """Acknowledge and delete copied entries."""
        if not entry_ids:
            return
        with translated():
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.xack(self.stream, self.group, *entry_ids)
                pipe.xdel(self.stream, *entry_ids)
                await pipe.execute()

    async def tidy(self, max_idle_ms: int) -> int:
        """Remove archivers that hold nothing and were idle past max_idle_ms; the count."""
        removed = 0
        with translated():
            for consumer in await self.client.xinfo_consumers(self.stream, self.group):
                if consumer["pending"] == 0 and consumer["idle"] > max_idle_ms:
                    name = consumer["name"]
                    await self.client.xgroup_delconsumer(self.stream, self.group, name)
                    removed += 1
        return removed

    async def backlog(self) -> int:
        """Entries not yet copied (pending or never delivered)."""
        with translated():
            length: int = await self.client.xlen(self.stream)
        return length


def _ids(fields: dict[bytes, bytes]) -> list[str]:
    return fields.get(b"ids", b"").decode().split()
