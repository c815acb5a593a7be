"""Domain objects from the Redis queue's records and its scripts' replies."""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from clawq_server.errors import IdempotencyKeyReused
from clawq_server.model import (
    NewTask,
    QueueStats,
    SideEffect,
    SubmitOutcome,
    Task,
    TaskError,
    TaskState,
)
from clawq_server.queue.result_meta import decode_result

_STATES = {state.value.encode(): state for state in TaskState}
_SIDE_EFFECTS = {effect.value: effect for effect in SideEffect}


def pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    """A dict from a flat [field, value, ...] reply (Lua returns HGETALL that way)."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


# The record fields to_task reads, in the order get.lua returns them.
READ_FIELDS = (
    b"r", b"state", b"attempt", b"nb", b"started", b"finished",
    b"output", b"stderr", b"meta", b"ecode", b"ereason", b"emsg",
)  # fmt: skip


def read_task(values: Sequence[bytes | None]) -> Task | None:
    """A Task from the READ_FIELDS values of its record; None when it does not exist."""
    if values[0] is None:
        return None
    return to_task({k: v for k, v in zip(READ_FIELDS, values, strict=True) if v is not None})


_LENGTH = struct.Struct(">i")


def done_entries(message: bytes) -> Iterator[tuple[str, bytes | None]]:
    """The (task id, record) pairs of a done message after its kind byte (done_entry in
    lib.lua); the record is None where the message leaves it out. done_task reads one."""
    at = 1
    while at < len(message):
        task_id, at = _sized(message, at)
        record, at = _sized(message, at)
        yield (task_id or b"").decode(), record


def done_task(record: bytes) -> Task | None:
    """The Task of a record carried by a done message."""
    values: list[bytes | None] = []
    at = 0
    for _ in READ_FIELDS:
        value, at = _sized(record, at)
        values.append(value)
    return read_task(values)


def _sized(data: bytes, at: int) -> tuple[bytes | None, int]:
    """The length-prefixed value at `at` (None for length -1) and where the next begins."""
    size = _LENGTH.unpack_from(data, at)[0]
    at += _LENGTH.size
    if size < 0:
        return None, at
    return data[at : at + size], at + size


def to_task(fields: dict[bytes, bytes]) -> Task:
    """A Task from its record hash."""
    (
        task_id,
        principal,
        tool,
        args,
        side_effect,
        idempotency_key,
        priority,
        max_attempts,
        idempotent,
        created,
        not_before,
    ) = orjson.loads(fields[b"r"])
    moved = fields.get(b"nb")  # set when a retry or requeue postponed the task
    code = fields.get(b"ecode")
    return Task(
        id=task_id,
        principal=principal,
        tool=tool,
        args=args,
        state=_STATES[fields[b"state"]],
        side_effect=_SIDE_EFFECTS[side_effect],
        attempt=int(fields.get(b"attempt", b"0")),
        max_attempts=max_attempts,
        priority=priority,
        idempotency_key=idempotency_key,
        idempotent=idempotent,
        created=datetime.fromtimestamp(created, UTC),
        not_before=datetime.fromtimestamp(not_before if moved is None else float(moved), UTC),
        started=_moment(fields.get(b"started")),
        finished=_moment(fields.get(b"finished")),
        result=decode_result(fields.get(b"output"), fields.get(b"stderr"), fields.get(b"meta")),
        error=None if code is None else _error(code, fields),
    )


def _moment(raw: bytes | None) -> datetime | None:
    return None if raw is None else datetime.fromtimestamp(float(raw), UTC)


def _error(code: bytes, fields: dict[bytes, bytes]) -> TaskError:
    return TaskError(code.decode(), fields[b"ereason"].decode(), fields[b"emsg"].decode())


def entry_order(fields: dict[bytes, bytes]) -> tuple[int, int]:
    """The stream entry id of a leased task as a sortable pair (age within a priority)."""
    millis, _, seq = fields.get(b"sid", b"0-0").partition(b"-")
    return int(millis), int(seq or b"0")


def outcomes(tasks: Sequence[NewTask], reply: Sequence[Any]) -> list[SubmitOutcome | Exception]:
    """Submit outcomes from submit.lua's reply: every task new except those it lists as
    (index, code) pairs, code 'e:<id>' (existing) or 'c' (key reused)."""
    result: list[SubmitOutcome | Exception] = [SubmitOutcome(task.id) for task in tasks]
    for position, code in zip(reply[1::2], reply[2::2], strict=True):
        index = int(position) - 1
        if code.startswith(b"e:"):
            result[index] = SubmitOutcome(code[2:].decode(), existing=True)
        else:
            result[index] = key_reused(tasks[index])
    return result


def key_reused(task: NewTask) -> IdempotencyKeyReused:
    """The error of an idempotency key used before with other arguments."""
    return IdempotencyKeyReused.of(task.idempotency_key, task.id)


def to_stats(reply: Sequence[Any]) -> QueueStats:
    """QueueStats from stats.lua's reply."""
    counters, delayed, in_flight, dead = reply
    ready: dict[int, int] = {}
    for name, value in pairs(counters).items():
        if name.startswith(b"r:") and int(value) > 0:
            ready[int(name[2:])] = int(value)
    return QueueStats(
        ready_by_priority=ready, in_flight=int(in_flight), delayed=int(delayed), dead=int(dead)
    )
