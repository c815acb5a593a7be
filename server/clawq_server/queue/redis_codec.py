"""Conversions between domain objects and the Redis queue's hashes and script arguments."""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from clawq_server.errors import IdempotencyKeyReused
from clawq_server.model import (
    Completion,
    NewTask,
    QueueStats,
    RetryPolicy,
    SideEffect,
    SubmitOutcome,
    Task,
    TaskError,
    TaskQuery,
    TaskState,
    ToolResult,
)
from clawq_server.queue.result_meta import decode_result, encode_meta

Arg = str | bytes | int | float

_STATES = {state.value.encode(): state for state in TaskState}
_SIDE_EFFECTS = {effect.value: effect for effect in SideEffect}


def epoch(moment: datetime) -> str:
    """A datetime as epoch seconds in the exact text Lua and sorted sets read back."""
    return repr(moment.timestamp())


def submit_batch(tasks: Sequence[NewTask], default_max_attempts: int) -> tuple[bytes, bytes]:
    """The two batch arguments of submit.lua: per-task fields as JSON, and the records.

    Per task, in submit.lua's order: id, principal, level (``<priority>:<tool>``), created,
    not_before ("" when equal to created), idempotency key, args hash ("" without a key),
    record length, and the record's 'k' field
    (lua/lib.lua). The record is what to_task reads back; scripts never parse it.
    One JSON array and one join keep the script call to a few arguments, which is what
    makes a batch cheap to pack and to read in Lua.
    """
    fields: list[Arg] = []
    records: list[bytes] = []
    dumps, fragment = orjson.dumps, orjson.Fragment
    # Admission stamps a whole batch with one time and an undelayed task's not_before is
    # that same object; the per-kind strings (level, key fields) repeat as well. Each is
    # made once per batch rather than once per task.
    stamped: datetime | None = None
    created, when = 0.0, ""
    kinds: dict[tuple[str, int, str, int, bool, SideEffect], tuple[str, str]] = {}
    for task in tasks:
        attempts = task.max_attempts or default_max_attempts
        if task.created is not stamped:
            stamped, created = task.created, task.created.timestamp()
            # orjson writes the same shortest round-trip text as repr(), several times faster.
            when, kinds = dumps(created).decode(), {}
        not_before = created if task.not_before is stamped else task.not_before.timestamp()
        kind = (
            task.principal,
            task.priority,
            task.tool,
            attempts,
            task.idempotent,
            task.side_effect,
        )
        strings = kinds.get(kind)
        if strings is None:
            strings = kinds[kind] = (
                f"{task.priority}:{task.tool}",
                _key_fields(task, when, attempts),
            )
        record = _record(task, fragment(task.args_json), attempts, created, not_before)
        records.append(record)
        fields += (
            task.id,
            task.principal,
            strings[0],
            when,
            "" if not_before == created else dumps(not_before).decode(),  # "": not delayed
            task.idempotency_key,
            task.args_hash if task.idempotency_key else "",  # compared only under a key
            len(record),
            strings[1],
        )
    return dumps(fields), b"".join(records)


def record_args(tasks: Sequence[Task]) -> list[Arg]:
    """The arguments of record.lua: finished tasks stored whole."""
    args: list[Arg] = []
    for task in tasks:
        created = task.created.timestamp()
        when = orjson.dumps(created).decode()
        record = _record(task, task.args, task.max_attempts, created, task.not_before.timestamp())
        finished = task.finished or task.created
        args += (task.id, task.principal, task.tool, when, task.state.value, task.attempt)
        args += (epoch(task.started or finished), epoch(finished), record)
        args.append(_key_fields(task, when, task.max_attempts))
        args += result_args(task.result)
    return args


def _record(
    task: NewTask | Task, args: Any, attempts: int, created: float, not_before: float
) -> bytes:
    # The 'r' field: what to_task reads back.
    return orjson.dumps(
        [
            task.id,
            task.principal,
            task.tool,
            args,
            task.side_effect.value,
            task.idempotency_key,
            task.priority,
            attempts,
            task.idempotent,
            created,
            not_before,
        ]
    )


def _key_fields(task: NewTask | Task, when: str, attempts: int) -> str:
    # The 'k' field (lua/lib.lua KEY_FIELDS); redo: a lost lease may run the task again.
    redo = "1" if task.idempotent or task.side_effect is SideEffect.READ_ONLY else "0"
    return f"{when}\x1f{attempts}\x1f{redo}\x1f{task.priority}:{task.tool}\x1f{task.principal}"


# A completion as RedisQueue.complete receives it: task id, lease token, outcome.
CompleteItem = tuple[str, str, Completion]


def complete_args(items: Sequence[CompleteItem], policy: RetryPolicy) -> list[Arg]:
    """The arguments of complete.lua for a batch of completions."""
    args: list[Arg] = [
        repr(policy.base_delay.total_seconds()),
        repr(policy.max_delay.total_seconds()),
    ]
    for task_id, token, completion in items:
        # random(): backoff jitter, not secrecy.
        args += (task_id, token, int(completion.retryable), repr(random.random()))  # noqa: S311
        args += completion_args(completion)
    return args


def completion_args(completion: Completion) -> list[Arg]:
    """The result and error values of one task in complete.lua's items."""
    result, error = completion.result, completion.error
    out: list[Arg] = ["0" if result is None else "1", *result_args(result)]
    if error is None:
        return [*out, "", "", ""]
    return [*out, error.code, error.reason, error.message]


def result_args(result: ToolResult | None) -> list[Arg]:
    """A result's output, stderr and metadata JSON ("" for each without a result)."""
    if result is None:
        return ["", "", ""]
    return [result.output, result.stderr, encode_meta(result)]


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
    return IdempotencyKeyReused(
        f"idempotency key {task.idempotency_key!r} was used with other arguments"
    )


def list_args(query: TaskQuery, max_page: int) -> list[Arg]:
    """The arguments of list.lua for query."""
    states = sorted(s.value for s in query.states)
    cursor = ("", "") if query.cursor is None else (repr(query.cursor[0]), query.cursor[1])
    return [
        int(query.principal is not None),
        query.principal or "",
        query.tool,
        epoch_or_blank(query.created_after),
        epoch_or_blank(query.created_before),
        *cursor,
        min(max(query.limit, 1), max_page),
        len(states),
        *states,
    ]


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


def epoch_or_blank(moment: datetime | None) -> str:
    """epoch() of moment, or "" for none (the scripts' "no bound")."""
    return "" if moment is None else epoch(moment)
