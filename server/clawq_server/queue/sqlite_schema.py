"""The SQLite task table: its schema and the conversions between rows and domain objects."""

from __future__ import annotations

import functools
import itertools
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from clawq_server.model import (
    NewTask,
    SideEffect,
    Task,
    TaskError,
    TaskState,
    ToolResult,
    from_epoch,
)
from clawq_server.queue.result_meta import decode_result, encode_meta

SCHEMA_VERSION = 1

# SQLite allows 999 host parameters in older builds; stay below it.
CHUNK = 900

# Timestamps are REAL epoch seconds; args and outputs are BLOBs; result metadata is JSON.
_DDL = """
CREATE TABLE IF NOT EXISTS tasks (
    id               TEXT PRIMARY KEY,
    principal        TEXT NOT NULL,
    tool             TEXT NOT NULL,
    args_json        BLOB NOT NULL,
    args_hash        TEXT NOT NULL,
    side_effect      TEXT NOT NULL,
    idem_key         TEXT,
    priority         INTEGER NOT NULL,
    max_attempts     INTEGER NOT NULL,
    idempotent       INTEGER NOT NULL,
    state            TEXT NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    created          REAL NOT NULL,
    not_before       REAL NOT NULL,
    started          REAL,
    finished         REAL,
    lease_token      TEXT,
    lease_expires    REAL,
    worker_id        TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    output           BLOB,
    stderr           BLOB,
    result_meta      BLOB,
    error_code       TEXT,
    error_reason     TEXT,
    error_message    TEXT
);
-- NULL keys (no idempotency key) never conflict.
CREATE UNIQUE INDEX IF NOT EXISTS ux_tasks_idem ON tasks(principal, idem_key);
-- Leasing order, and per-state counts for stats.
CREATE INDEX IF NOT EXISTS ix_tasks_queue ON tasks(state, priority DESC, not_before, created);
-- The next delayed task to wake for, and expired leases to reclaim.
CREATE INDEX IF NOT EXISTS ix_tasks_due ON tasks(not_before) WHERE state = 'QUEUED';
CREATE INDEX IF NOT EXISTS ix_tasks_lease ON tasks(lease_expires) WHERE state = 'RUNNING';
-- Listing a principal's tasks newest first.
CREATE INDEX IF NOT EXISTS ix_tasks_listing ON tasks(principal, created, id);
"""

COLUMNS = (
    "id, principal, tool, args_json, state, side_effect, attempt, max_attempts, priority,"
    " idem_key, idempotent, created, not_before, started, finished, output, stderr,"
    " result_meta, error_code, error_reason, error_message"
)

# A batch goes in as multi-row INSERT ... VALUES statements, one sqlite3_step each. With
# executemany, every row's step releases and re-takes the GIL; while the event loop is busy
# admitting the next batch, each re-take can wait a full switch interval, and inserts crawl.
# Bound values also cost SQLite less than pulling each one out of a JSON document.
_NEW_COLUMNS = (
    "id, principal, tool, args_json, args_hash, side_effect, idem_key,"
    " priority, max_attempts, idempotent, created, not_before, state"
)
_NEW_PARAMS = _NEW_COLUMNS.count(",")  # every column but state, which is a constant
_NEW_ROW = f"({','.join('?' * _NEW_PARAMS)},'QUEUED')"
# The one-row form: what benchmarks run with sqlite3 executemany as the raw limit.
INSERT = f"INSERT INTO tasks ({_NEW_COLUMNS}) VALUES {_NEW_ROW}"  # noqa: S608
# Rows per statement: powers of two up to this, so a handful of statement shapes, each
# compiled once and kept in the connection's statement cache, serve every batch size.
MAX_INSERT_ROWS = 512

# A task stored whole as it is (a call answered from the cache); an id present is kept.
# args_hash only serves idempotency keys, which such calls never carry.
INSERT_FINISHED = (
    f"INSERT OR IGNORE INTO tasks ({COLUMNS}, args_hash)"  # noqa: S608  (constant columns)
    f" VALUES ({','.join('?' * (COLUMNS.count(',') + 2))})"
)


def chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    """items in slices small enough for one IN (...) list."""
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def marks(count: int) -> str:
    """A placeholder list for count parameters."""
    return ",".join("?" * count)


def apply_schema(conn: sqlite3.Connection) -> None:
    """Create the table and indexes if missing; refuse a file from a newer version."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"queue database schema {version} is newer than {SCHEMA_VERSION}")
    conn.executescript(_DDL)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def insert_statements(
    tasks: Sequence[NewTask], default_attempts: int, max_params: int
) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """(statement, parameters) pairs that insert tasks as QUEUED rows.

    max_params is the connection's host parameter limit (SQLITE_LIMIT_VARIABLE_NUMBER).
    """
    rows = [_insert_row(t, t.max_attempts or default_attempts) for t in tasks]
    most = min(MAX_INSERT_ROWS, max_params // _NEW_PARAMS)
    if most < 1:
        raise ValueError(f"a limit of {max_params} host parameters cannot hold one row")
    start = 0
    while start < len(rows):
        count = min(most, 1 << ((len(rows) - start).bit_length() - 1))
        part = rows[start : start + count]
        yield _insert_sql(count), tuple(itertools.chain.from_iterable(part))
        start += count


@functools.cache
def _insert_sql(rows: int) -> str:
    return f"{INSERT}{(',' + _NEW_ROW) * (rows - 1)}"


def _insert_row(task: NewTask, max_attempts: int) -> tuple[Any, ...]:
    created = task.created.timestamp()
    # Admission hands an undelayed task the same object twice: one conversion serves both.
    not_before = created if task.not_before is task.created else task.not_before.timestamp()
    return (
        task.id,
        task.principal,
        task.tool,
        task.args_json,
        task.args_hash,
        task.side_effect.value,
        task.idempotency_key or None,
        task.priority,
        max_attempts,
        int(task.idempotent),
        created,
        not_before,
    )


def task_row(task: Task) -> tuple[Any, ...]:
    """The COLUMNS values of a task."""
    return (
        task.id,
        task.principal,
        task.tool,
        orjson.dumps(task.args),
        task.state.value,
        task.side_effect.value,
        task.attempt,
        task.max_attempts,
        task.priority,
        task.idempotency_key or None,
        int(task.idempotent),
        task.created.timestamp(),
        task.not_before.timestamp(),
        None if task.started is None else task.started.timestamp(),
        None if task.finished is None else task.finished.timestamp(),
        *result_params(task.result),
        *error_params(task.error),
    )


def result_params(result: ToolResult | None) -> tuple[bytes | None, bytes | None, bytes | None]:
    """The (output, stderr, result_meta) columns of a result."""
    if result is None:
        return None, None, None
    return result.output, result.stderr, encode_meta(result)


def error_params(error: TaskError | None) -> tuple[str | None, str | None, str | None]:
    """The (error_code, error_reason, error_message) columns of an error."""
    if error is None:
        return None, None, None
    return error.code, error.reason, error.message


def row_to_task(row: Sequence[Any]) -> Task:
    """A Task from a row selected with COLUMNS (positions as listed there)."""
    created = _aware(row[11])
    return Task(
        id=row[0],
        principal=row[1],
        tool=row[2],
        args=orjson.loads(row[3]),
        state=_STATES[row[4]],
        side_effect=_SIDE_EFFECTS[row[5]],
        attempt=row[6],
        max_attempts=row[7],
        priority=row[8],
        idempotency_key=row[9] or "",
        idempotent=bool(row[10]),
        created=created,
        not_before=created if row[12] == row[11] else _aware(row[12]),
        started=from_epoch(row[13]),
        finished=from_epoch(row[14]),
        result=decode_result(*row[15:18]),
        error=None if row[18] is None else TaskError(*row[18:21]),
    )


# Plain dict lookups: calling an enum class to look a value up costs several times more.
_STATES = {state.value: state for state in TaskState}
_SIDE_EFFECTS = {effect.value: effect for effect in SideEffect}


def _aware(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
