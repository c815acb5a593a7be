"""The arguments of the Redis queue's Lua scripts, made from domain objects."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from clawq_server.model import (
    Completion,
    NewTask,
    RetryPolicy,
    SideEffect,
    Task,
    TaskQuery,
    ToolResult,
)
from clawq_server.queue.result_meta import encode_meta

Arg = str | bytes | int | float


def epoch(moment: datetime) -> str:
    """A datetime as epoch seconds in the exact text Lua and sorted sets read back."""
    return repr(moment.timestamp())


def epoch_or_blank(moment: datetime | None) -> str:
    """epoch() of moment, or "" for none (the scripts' "no bound")."""
    return "" if moment is None else epoch(moment)


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
    strings = _BatchStrings()
    for task in tasks:
        attempts = task.max_attempts or default_max_attempts
        created, when, not_before, level, key_fields = strings.of(task, attempts)
        record = _record(task, orjson.Fragment(task.args_json), attempts, created, not_before)
        records.append(record)
        fields += (
            task.id,
            task.principal,
            level,
            when,
            "" if not_before == created else _text(not_before),  # "": not delayed
            task.idempotency_key,
            task.args_hash if task.idempotency_key else "",  # compared only under a key
            len(record),
            key_fields,
        )
    return orjson.dumps(fields), b"".join(records)


class _BatchStrings:
    """The time and kind strings of a batch's tasks, each made once per batch.

    Admission stamps a whole batch with one time, and an undelayed task's not_before is
    that same object; the level and key fields repeat for every task of a kind.
    """

    def __init__(self) -> None:
        self._stamp: datetime | None = None
        self._created, self._when = 0.0, ""
        self._kinds: dict[tuple[str, int, str, int, bool, SideEffect], tuple[str, str]] = {}

    def of(self, task: NewTask, attempts: int) -> tuple[float, str, float, str, str]:
        """created (epoch seconds) and its text, not_before, level and key fields of task."""
        if task.created is not self._stamp:
            self._stamp, self._created = task.created, task.created.timestamp()
            self._when, self._kinds = _text(self._created), {}
        created, when = self._created, self._when
        not_before = created if task.not_before is self._stamp else task.not_before.timestamp()
        key = (
            task.principal,
            task.priority,
            task.tool,
            attempts,
            task.idempotent,
            task.side_effect,
        )
        strings = self._kinds.get(key)
        if strings is None:
            level = f"{task.priority}:{task.tool}"
            strings = self._kinds[key] = (level, _key_fields(task, when, attempts))
        return created, when, not_before, *strings


def _text(seconds: float) -> str:
    # orjson writes the same shortest round-trip text as repr(), several times faster.
    return orjson.dumps(seconds).decode()


def record_args(tasks: Sequence[Task]) -> list[Arg]:
    """The arguments of record.lua: finished tasks stored whole."""
    args: list[Arg] = []
    for task in tasks:
        created = task.created.timestamp()
        when = _text(created)
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
