"""The SQLite queue's worker-side transitions (lease, heartbeat, complete), on the writer thread."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from typing import Any

from clawq_server.errors import LeaseLost
from clawq_server.model import (
    TERMINAL_STATES,
    Completion,
    HeartbeatOutcome,
    RetryPolicy,
    SideEffect,
    Task,
    TaskError,
    TaskState,
)
from clawq_server.queue.backoff import backoff_delay
from clawq_server.queue.sqlite_db import Effects
from clawq_server.queue.sqlite_schema import (
    COLUMNS,
    error_params,
    marks,
    result_params,
    row_to_task,
)

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
    """Claim up to limit ready tasks; with fewer, also when the next one may be ready."""
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
    if len(tasks) == limit:
        return tasks, None
    return tasks, _next_due(conn, tool_sql, tool_params)


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
    row = conn.execute(
        f"UPDATE tasks SET output = ?, stderr = ?, result_meta = ? WHERE id = ?"  # noqa: S608
        f" RETURNING {COLUMNS}",  # COLUMNS is a constant
        (*result_params(completion.result), task_id),
    ).fetchone()
    if finished is None:
        fx.work = True
    else:
        fx.terminal.add(task_id)
        fx.finished[task_id] = row_to_task(row)  # handed to waiters: no re-read
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


def release_many(conn: sqlite3.Connection, fx: Effects, ids: Sequence[str], token: str) -> None:
    """Give back tasks leased under token that no worker received."""
    conn.executemany(
        "UPDATE tasks SET state = 'QUEUED', attempt = max(attempt - 1, 0), lease_token = NULL,"
        " lease_expires = NULL, worker_id = NULL WHERE id = ? AND lease_token = ?"
        " AND state = 'RUNNING'",
        [(task_id, token) for task_id in ids],
    )
    fx.work = True
