"""Decoding of queue event messages (no Redis needed: dispatch is given the bytes)."""

from __future__ import annotations

import struct

import redis.asyncio

from clawq_server.queue.redis_events import Events


def events() -> Events:
    """Events over a client that is never used (nothing is started)."""
    return Events(redis.asyncio.Redis(), "q:events", "q:done")


async def test_ids_only_messages_of_an_earlier_version_wake_their_waiters() -> None:
    """'t <id> <id>' (scripts of an earlier clawq, mid-upgrade) wakes the waiters, who
    then read the task themselves."""
    hub = events()
    with hub.watching("a1") as first, hub.watching("b2") as second, hub.watching("c3") as other:
        hub.dispatch(b"t a1 b2")
    assert first.woken.is_set()
    assert second.woken.is_set()
    assert not other.woken.is_set()
    assert first.task is None


async def test_a_left_out_record_wakes_the_waiter_without_a_task() -> None:
    """An entry whose record was left out (over the size caps) is read back by its waiter."""
    hub = events()
    entry = struct.pack(">i", 2) + b"a1" + struct.pack(">i", -1)
    with hub.watching("a1") as watch:
        hub.dispatch(b"T" + entry)
    assert watch.woken.is_set()
    assert watch.task is None
