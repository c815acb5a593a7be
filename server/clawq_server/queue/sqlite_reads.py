"""The SQLite queue's queries; each runs on a reader thread with its own connection."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from clawq_server.model import QueueStats, Task, TaskPage, TaskQuery
from clawq_server.queue.sqlite_schema import COLUMNS, chunks, marks, row_to_task

MAX_PAGE = 1000
_CREATED = 11  # position of created in COLUMNS


def get_many(conn: sqlite3.Connection, ids: Sequence[str], principal: str | None) -> list[Task]:
    """The tasks that exist and belong to principal, in the order asked."""
    found: dict[str, Task] = {}
    for part in chunks(sorted(set(ids))):
        rows = conn.execute(
            f"SELECT {COLUMNS} FROM tasks WHERE id IN ({marks(len(part))})",  # noqa: S608
            tuple(part),  # (constant columns and placeholders only)
        )
        for row in rows:
            if principal is None or row[1] == principal:
                found[row[0]] = row_to_task(row)
    return [found[task_id] for task_id in ids if task_id in found]


def list_tasks(conn: sqlite3.Connection, query: TaskQuery, table: str = "tasks") -> TaskPage:
    """One page of tasks, newest first, keyset-paged on (created, id).

    table is the queue's own or the archive's (same columns); never user input.
    """
    where, params = _filters(query)
    limit = min(max(query.limit, 1), MAX_PAGE)
    sql = f"SELECT {COLUMNS} FROM {table}"  # noqa: S608  (filters are placeholders only)
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created DESC, id DESC LIMIT ?"
    rows = conn.execute(sql, (*params, limit + 1)).fetchall()
    page, more = rows[:limit], len(rows) > limit
    cursor = (page[-1][_CREATED], page[-1][0]) if more else None
    return TaskPage(tasks=[row_to_task(row) for row in page], next_cursor=cursor)


def _filters(query: TaskQuery) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if query.principal is not None:
        where.append("principal = ?")
        params.append(query.principal)
    if query.states:
        states = sorted(s.value for s in query.states)
        where.append(f"state IN ({marks(len(states))})")
        params.extend(states)
    if query.tool:
        where.append("tool = ?")
        params.append(query.tool)
    if query.created_after is not None:
        where.append("created >= ?")
        params.append(query.created_after.timestamp())
    if query.created_before is not None:
        where.append("created < ?")
        params.append(query.created_before.timestamp())
    if query.cursor is not None:
        where.append("(created, id) < (?, ?)")
        params.extend(query.cursor)
    return where, params


def stats(conn: sqlite3.Connection, now: float) -> QueueStats:
    """Ready tasks per priority, running, delayed and dead counts."""
    ready = conn.execute(
        "SELECT priority, count(*) FROM tasks WHERE state = 'QUEUED' AND not_before <= ?"
        " GROUP BY priority",
        (now,),
    ).fetchall()
    (delayed,) = conn.execute(
        "SELECT count(*) FROM tasks INDEXED BY ix_tasks_due"
        " WHERE state = 'QUEUED' AND not_before > ?",
        (now,),
    ).fetchone()
    counts = dict(
        conn.execute(
            "SELECT state, count(*) FROM tasks WHERE state IN ('RUNNING', 'DEAD') GROUP BY state"
        ).fetchall()
    )
    return QueueStats(
        ready_by_priority={int(p): int(n) for p, n in ready},
        in_flight=int(counts.get("RUNNING", 0)),
        delayed=int(delayed),
        dead=int(counts.get("DEAD", 0)),
    )


def count_queued(conn: sqlite3.Connection, principal: str) -> int:
    """QUEUED tasks of one principal."""
    (count,) = conn.execute(
        "SELECT count(*) FROM tasks WHERE principal = ? AND state = 'QUEUED'", (principal,)
    ).fetchone()
    return int(count)
