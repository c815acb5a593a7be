"""The SQLite queue's state transitions; each runs on the writer thread inside a transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterator, Sequence
from typing import Any

from clawq_server.errors import (
    IdempotencyKeyReused,
    LeaseLost,
    NotFound,
    ResourceExhausted,
    TaskAlreadyFinished,
)
from clawq_server.model import (
    TERMINAL_STATES,
    Completion,
    HeartbeatOutcome,
    NewTask,
    RetryPolicy,
    SideEffect,
    SubmitOutcome,
    Task,
    TaskError,
    TaskState,
)
from clawq_server.queue.backoff import backoff_delay
from clawq_server.queue.sqlite_db import Effects
from clawq_server.queue.sqlite_schema import (
    COLUMNS,
    INSERT,
    error_params,
    insert_params,
    result_params,
    row_to_task,
)

# SQLite allows 999 host parameters in older builds; stay below it.
CHUNK = 900

WORKER_LOST = TaskError(
    code="ABORTED",
    reason="WORKER_LOST",
    message="the worker running this task stopped renewing its lease",
)

_FINISH = (
    "UPDATE tasks SET state = ?, not_before = coalesce(?, not_before), finished = ?,"
    " lease_token = NULL, lease_expires = NULL, worker_id = NULL,"
    " error_code = ?, error_reason = ?, error_message = ? WHERE id = ? AND state = 'RUNNING'"
)

SELECT_ONE = f"SELECT {COLUMNS} FROM tasks WHERE id = ?"  # noqa: S608  (constant columns)

Outcome = SubmitOutcome | Exception


def chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    """items in slices small enough for one IN (...) list."""
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def marks(count: int) -> str:
    """A placeholder list for count parameters."""
    return ",".join("?" * count)


def submit(
    conn: sqlite3.Connection,
    fx: Effects,
    tasks: Sequence[NewTask],
    *,
    atomic: bool,
    max_queued: int,
    retry: RetryPolicy,
) -> list[Outcome]:
    """Insert tasks in one executemany, resolving idempotency keys first."""
    seen = _known_keys(conn, tasks)
    outcomes: list[Outcome] = []
    fresh: list[NewTask] = []
    for task in tasks:
        key = (task.principal, task.idempotency_key)
        if task.idempotency_key and key in seen:
            task_id, args_hash = seen[key]
            if args_hash == task.args_hash:
                outcomes.append(SubmitOutcome(task_id, existing=True))
                continue
            error = IdempotencyKeyReused(
                f"idempotency key {task.idempotency_key!r} was used with other arguments"
            )
            if atomic:
                raise error
            outcomes.append(error)
            continue
        if task.idempotency_key:
            seen[key] = (task.id, task.args_hash)
        fresh.append(task)
        outcomes.append(SubmitOutcome(task.id))
    if fresh and max_queued > 0:
        _check_room(conn, len(fresh), max_queued)
    default = retry.default_max_attempts
    conn.executemany(INSERT, [insert_params(t, t.max_attempts or default) for t in fresh])
    fx.work = fx.work or bool(fresh)
    return outcomes


def _known_keys(
    conn: sqlite3.Connection, tasks: Sequence[NewTask]
) -> dict[tuple[str, str], tuple[str, str]]:
    by_principal: dict[str, list[str]] = {}
    for task in tasks:
        if task.idempotency_key:
            by_principal.setdefault(task.principal, []).append(task.idempotency_key)
    seen: dict[tuple[str, str], tuple[str, str]] = {}
    for principal, keys in by_principal.items():
        for part in chunks(sorted(set(keys))):
            rows = conn.execute(
                "SELECT idem_key, id, args_hash FROM tasks"  # noqa: S608  (placeholders only)
                f" WHERE principal = ? AND idem_key IN ({marks(len(part))})",
                (principal, *part),
            )
            for key, task_id, args_hash in rows:
                seen[(principal, key)] = (task_id, args_hash)
    return seen


def _check_room(conn: sqlite3.Connection, adding: int, max_queued: int) -> None:
    (queued,) = conn.execute("SELECT count(*) FROM tasks WHERE state = 'QUEUED'").fetchone()
    if queued + adding > max_queued:
        raise ResourceExhausted(
            f"the queue holds {queued} of at most {max_queued} tasks", retry_after=1.0
        )


def reclaim_expired(conn: sqlite3.Connection, fx: Effects, now: float) -> None:
    """Settle tasks whose lease ran out: redeliver what is safe to run again, fail the rest."""
    rows = conn.execute(
        "SELECT id, side_effect, idempotent, attempt, max_attempts, cancel_requested"
        " FROM tasks INDEXED BY ix_tasks_lease WHERE state = 'RUNNING' AND lease_expires < ?",
        (now,),
    ).fetchall()
    updates: list[tuple[Any, ...]] = []
    for task_id, side_effect, idempotent, attempt, max_attempts, cancel_requested in rows:
        if cancel_requested:
            state = TaskState.CANCELLED
        elif side_effect == SideEffect.READ_ONLY or idempotent:
            state = TaskState.DEAD if attempt >= max_attempts else TaskState.QUEUED
        else:
            state = TaskState.FAILED
        finished = now if state in TERMINAL_STATES else None
        updates.append((state.value, None, finished, *error_params(WORKER_LOST), task_id))
        if finished is None:
            fx.work = True
        else:
            fx.terminal.add(task_id)
    conn.executemany(_FINISH, updates)


def lease(
    conn: sqlite3.Connection,
    fx: Effects,
    *,
    tools: Collection[str] | None,
    limit: int,
    now: float,
    expires: float,
    token: str,
    worker_id: str,
) -> tuple[list[Task], float | None]:
    """Claim up to limit ready tasks; with none, also when the next one may be ready."""
    reclaim_expired(conn, fx, now)
    if limit <= 0 or (tools is not None and not tools):
        return [], None
    tool_sql, tool_params = _tool_filter(tools)
    rows = conn.execute(
        "UPDATE tasks SET state = 'RUNNING', attempt = attempt + 1, lease_token = ?,"  # noqa: S608
        # (only placeholders and constant SQL are formatted into these statements)
        " lease_expires = ?, worker_id = ?, started = ? WHERE id IN ("
        f" SELECT id FROM tasks WHERE state = 'QUEUED' AND not_before <= ?{tool_sql}"
        " ORDER BY priority DESC, not_before, created LIMIT ?)"
        f" RETURNING {COLUMNS}",
        (token, expires, worker_id, now, now, *tool_params, limit),
    ).fetchall()
    tasks = sorted(
        (row_to_task(row) for row in rows), key=lambda t: (-t.priority, t.not_before, t.created)
    )
    if tasks:
        return tasks, None
    return [], _next_due(conn, tool_sql, tool_params)


def _tool_filter(tools: Collection[str] | None) -> tuple[str, tuple[str, ...]]:
    if tools is None:
        return "", ()
    names = tuple(sorted(set(tools)))
    return f" AND tool IN ({marks(len(names))})", names


def _next_due(
    conn: sqlite3.Connection, tool_sql: str, tool_params: tuple[str, ...]
) -> float | None:
    # INDEXED BY: without ANALYZE statistics the planner prefers ix_tasks_queue and sorts.
    due = conn.execute(
        "SELECT not_before FROM tasks INDEXED BY ix_tasks_due"  # noqa: S608  (placeholders)
        f" WHERE state = 'QUEUED'{tool_sql} ORDER BY not_before LIMIT 1",
        tool_params,
    ).fetchone()
    expiry = conn.execute(
        "SELECT lease_expires FROM tasks INDEXED BY ix_tasks_lease WHERE state = 'RUNNING'"
        " ORDER BY lease_expires LIMIT 1"
    ).fetchone()
    times = [row[0] for row in (due, expiry) if row is not None]
    return min(times) if times else None


def heartbeat(
    conn: sqlite3.Connection, leases: Sequence[tuple[str, str]], expires: float
) -> HeartbeatOutcome:
    """Extend the leases still held; name the lost ones and those asked to cancel."""
    lost: set[str] = set()
    cancelled: set[str] = set()
    for task_id, token in leases:
        row = conn.execute(
            "UPDATE tasks SET lease_expires = ? WHERE id = ? AND lease_token = ?"
            " AND state = 'RUNNING' RETURNING cancel_requested",
            (expires, task_id, token),
        ).fetchone()
        if row is None:
            lost.add(task_id)
        elif row[0]:
            cancelled.add(task_id)
    return HeartbeatOutcome(lost=frozenset(lost), cancelled=frozenset(cancelled))


def _fenced(conn: sqlite3.Connection, task_id: str, token: str) -> tuple[int, int, int]:
    row = conn.execute(
        "SELECT state, lease_token, attempt, max_attempts, cancel_requested"
        " FROM tasks WHERE id = ?",
        (task_id,),
    ).fetchone()
    if row is None or row[0] != TaskState.RUNNING or row[1] != token:
        raise LeaseLost(f"task {task_id} is no longer leased with this token")
    return row[2], row[3], row[4]


def complete(
    conn: sqlite3.Connection,
    fx: Effects,
    task_id: str,
    token: str,
    completion: Completion,
    *,
    now: float,
    retry: RetryPolicy,
) -> TaskState:
    """Record a worker's outcome; a retryable error goes back to the queue with backoff."""
    attempt, max_attempts, cancel_requested = _fenced(conn, task_id, token)
    not_before: float | None = None
    if cancel_requested:
        state = TaskState.CANCELLED
    elif completion.error is None:
        state = TaskState.SUCCEEDED
    elif completion.retryable and attempt < max_attempts:
        state = TaskState.QUEUED
        not_before = now + backoff_delay(attempt, retry)
    else:
        state = TaskState.DEAD if completion.retryable else TaskState.FAILED
    finished = None if state == TaskState.QUEUED else now
    conn.execute(
        _FINISH, (state.value, not_before, finished, *error_params(completion.error), task_id)
    )
    conn.execute(
        "UPDATE tasks SET output = ?, stderr = ?, result_meta = ? WHERE id = ?",
        (*result_params(completion.result), task_id),
    )
    if finished is None:
        fx.work = True
    else:
        fx.terminal.add(task_id)
    return state


def release(conn: sqlite3.Connection, fx: Effects, task_id: str, token: str, now: float) -> None:
    """Give a leased task back uncounted (or cancel it, if that was asked meanwhile)."""
    _, _, cancel_requested = _fenced(conn, task_id, token)
    if cancel_requested:
        conn.execute(_FINISH, ("CANCELLED", None, now, None, None, None, task_id))
        fx.terminal.add(task_id)
        return
    conn.execute(
        "UPDATE tasks SET state = 'QUEUED', attempt = max(attempt - 1, 0), lease_token = NULL,"
        " lease_expires = NULL, worker_id = NULL WHERE id = ?",
        (task_id,),
    )
    fx.work = True


def cancel(
    conn: sqlite3.Connection, fx: Effects, task_id: str, principal: str | None, now: float
) -> Task:
    """Cancel a queued task now; flag a running one for its worker."""
    row = conn.execute(SELECT_ONE, (task_id,)).fetchone()
    if row is None or (principal is not None and row[1] != principal):
        raise NotFound(f"task {task_id} not found")
    task = row_to_task(row)
    if task.done:
        raise TaskAlreadyFinished(f"task {task_id} is already {task.state}")
    if task.state == TaskState.QUEUED:
        conn.execute(
            "UPDATE tasks SET state = 'CANCELLED', finished = ? WHERE id = ?", (now, task_id)
        )
        fx.terminal.add(task_id)
    else:
        conn.execute("UPDATE tasks SET cancel_requested = 1 WHERE id = ?", (task_id,))
    row = conn.execute(SELECT_ONE, (task_id,)).fetchone()
    return row_to_task(row)


def requeue_dead(
    conn: sqlite3.Connection, fx: Effects, ids: Sequence[str] | None, now: float
) -> int:
    """Move DEAD tasks back to the queue with a fresh attempt budget."""
    sql = (
        "UPDATE tasks SET state = 'QUEUED', attempt = 0, not_before = ?, finished = NULL,"
        " cancel_requested = 0 WHERE state = 'DEAD'"
    )
    if ids is None:
        moved = conn.execute(sql, (now,)).rowcount
    else:
        moved = 0
        for part in chunks(list(ids)):
            cursor = conn.execute(f"{sql} AND id IN ({marks(len(part))})", (now, *part))
            moved += cursor.rowcount
    fx.work = fx.work or moved > 0
    return moved
