"""The SQLite queue's caller-side transitions (submit, cancel, requeue), on the writer thread."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from clawq_server.errors import (
    IdempotencyKeyReused,
    NotFound,
    ResourceExhausted,
    TaskAlreadyFinished,
)
from clawq_server.model import NewTask, RetryPolicy, SubmitOutcome, Task, TaskState
from clawq_server.queue.sqlite_db import Effects
from clawq_server.queue.sqlite_schema import (
    COLUMNS,
    INSERT_FINISHED,
    chunks,
    insert_statements,
    marks,
    row_to_task,
    task_row,
)

SELECT_ONE = f"SELECT {COLUMNS} FROM tasks WHERE id = ?"  # noqa: S608  (constant columns)

Outcome = SubmitOutcome | Exception


def submit(
    conn: sqlite3.Connection,
    fx: Effects,
    tasks: Sequence[NewTask],
    *,
    atomic: bool,
    max_queued: int,
    retry: RetryPolicy,
) -> list[Outcome]:
    """Insert tasks (a few multi-row statements), resolving idempotency keys first."""
    seen = _known_keys(conn, tasks)
    outcomes: list[Outcome] = []
    fresh: list[NewTask] = []
    for task in tasks:
        if not task.idempotency_key:
            fresh.append(task)
            outcomes.append(SubmitOutcome(task.id))
            continue
        key = (task.principal, task.idempotency_key)
        if key in seen:
            task_id, args_hash = seen[key]
            if args_hash == task.args_hash:
                outcomes.append(SubmitOutcome(task_id, existing=True))
                continue
            error = IdempotencyKeyReused.of(task.idempotency_key, task.id)
            if atomic:
                raise error
            outcomes.append(error)
            continue
        seen[key] = (task.id, task.args_hash)
        fresh.append(task)
        outcomes.append(SubmitOutcome(task.id))
    if fresh and max_queued > 0:
        _check_room(conn, len(fresh), max_queued)
    _insert(conn, fresh, retry.default_max_attempts)
    fx.work = fx.work or bool(fresh)
    return outcomes


def _insert(conn: sqlite3.Connection, tasks: Sequence[NewTask], default_attempts: int) -> None:
    limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    for statement, params in insert_statements(tasks, default_attempts, limit):
        conn.execute(statement, params)


def record(conn: sqlite3.Connection, fx: Effects, tasks: Sequence[Task]) -> None:
    """Store finished tasks whole; an id already stored is left as it is."""
    conn.executemany(INSERT_FINISHED, [(*task_row(task), "") for task in tasks])
    fx.terminal.update(task.id for task in tasks)


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
