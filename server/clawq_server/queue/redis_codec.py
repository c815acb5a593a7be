"""Conversions between domain objects and the Redis queue's hashes and script arguments."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import orjson

from clawq_server.errors import IdempotencyKeyReused
from clawq_server.model import (
    Completion,
    NewTask,
    SideEffect,
    SubmitOutcome,
    Task,
    TaskError,
    TaskState,
    ToolResult,
    from_epoch,
)
from clawq_server.queue.keys import QueueKeys

Arg = str | bytes | int | float


def epoch(moment: datetime) -> str:
    """A datetime as epoch seconds in the exact text Lua and sorted sets read back."""
    return repr(moment.timestamp())


def submit_args(keys: QueueKeys, task: NewTask, default_max_attempts: int) -> list[Arg]:
    """The per-task arguments of submit.lua, in its FIELDS order."""
    idem_key = keys.idempotency(task.principal, task.idempotency_key)
    return [
        task.id,
        task.principal,
        task.tool,
        task.args_json,
        task.args_hash,
        task.side_effect.value,
        task.idempotency_key,
        idem_key if task.idempotency_key else "",
        task.priority,
        task.max_attempts or default_max_attempts,
        int(task.idempotent),
        epoch(task.created),
        epoch(task.not_before),
    ]


def completion_args(completion: Completion) -> list[Arg]:
    """The result and error arguments of complete.lua (ARGV[9..15])."""
    result, error = completion.result, completion.error
    out: list[Arg] = ["0", "", "", ""]
    if result is not None:
        meta = {
            "truncated": result.truncated,
            "stderr_truncated": result.stderr_truncated,
            "exit_code": result.exit_code,
            "signal": result.signal,
            "payload": result.payload,
            "cached": result.cached,
        }
        out = ["1", result.output, result.stderr, orjson.dumps(meta)]
    if error is None:
        return [*out, "", "", ""]
    return [*out, error.code, error.reason, error.message]


def pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    """A dict from a flat [field, value, ...] reply (Lua returns HGETALL that way)."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def to_task(fields: dict[bytes, bytes]) -> Task:
    """A Task from its record hash."""

    def text(name: bytes) -> str:
        return fields[name].decode()

    def moment(name: bytes) -> datetime | None:
        raw = fields.get(name)
        return None if raw is None else from_epoch(float(raw))

    code = fields.get(b"ecode")
    return Task(
        id=text(b"id"),
        principal=text(b"principal"),
        tool=text(b"tool"),
        args=orjson.loads(fields[b"args"]),
        state=TaskState(text(b"state")),
        side_effect=SideEffect(text(b"se")),
        attempt=int(fields[b"attempt"]),
        max_attempts=int(fields[b"max"]),
        priority=int(fields[b"prio"]),
        idempotency_key=text(b"ikey"),
        idempotent=fields[b"idem"] == b"1",
        created=datetime.fromtimestamp(float(fields[b"created"]), UTC),
        not_before=datetime.fromtimestamp(float(fields[b"nb"]), UTC),
        started=moment(b"started"),
        finished=moment(b"finished"),
        result=_result(fields),
        error=None if code is None else TaskError(code.decode(), text(b"ereason"), text(b"emsg")),
    )


def entry_order(fields: dict[bytes, bytes]) -> tuple[int, int]:
    """The stream entry id of a leased task as a sortable pair (age within a priority)."""
    millis, _, seq = fields.get(b"sid", b"0-0").partition(b"-")
    return int(millis), int(seq or b"0")


def _result(fields: dict[bytes, bytes]) -> ToolResult | None:
    meta_json = fields.get(b"meta")
    if meta_json is None:
        return None
    meta = orjson.loads(meta_json)
    return ToolResult(
        output=fields.get(b"output", b""),
        truncated=meta["truncated"],
        stderr=fields.get(b"stderr", b""),
        stderr_truncated=meta["stderr_truncated"],
        exit_code=meta["exit_code"],
        signal=meta["signal"],
        payload=meta["payload"],
        cached=meta["cached"],
    )


def outcome(task: NewTask, raw: bytes) -> SubmitOutcome | Exception:
    """The submit outcome of one item from its script code (n, e:<id>, c)."""
    if raw == b"n":
        return SubmitOutcome(task.id)
    if raw.startswith(b"e:"):
        return SubmitOutcome(raw[2:].decode(), existing=True)
    return key_reused(task)


def key_reused(task: NewTask) -> IdempotencyKeyReused:
    """The error of an idempotency key used before with other arguments."""
    return IdempotencyKeyReused(
        f"idempotency key {task.idempotency_key!r} was used with other arguments"
    )


def epoch_or_blank(moment: datetime | None) -> str:
    """epoch() of moment, or "" for none (the scripts' "no bound")."""
    return "" if moment is None else epoch(moment)
