"""A batch goes into SQLite through a few multi-row INSERT shapes, within the parameter limit."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from clawq_server.queue.sqlite_db import connect
from clawq_server.queue.sqlite_schema import (
    COLUMNS,
    MAX_INSERT_ROWS,
    apply_schema,
    insert_statements,
    row_to_task,
)
from tests.contract.helpers import new_task

PARAMS_PER_ROW = 12


@pytest.mark.parametrize("count", [1, 2, 3, 511, 512, 513, 1000, 1537])
def test_rows_split_in_powers_of_two_with_every_task_once_in_order(count: int) -> None:
    tasks = [new_task(task_id=f"t{i:05d}") for i in range(count)]
    statements = list(insert_statements(tasks, 3, 32_766))
    sizes = [len(params) // PARAMS_PER_ROW for _, params in statements]
    assert sum(sizes) == count
    assert all(size & (size - 1) == 0 and size <= MAX_INSERT_ROWS for size in sizes)
    assert len({sql for sql, _ in statements}) == len(set(sizes))
    ids = [params[i] for _, params in statements for i in range(0, len(params), PARAMS_PER_ROW)]
    assert ids == [t.id for t in tasks]


def test_a_low_parameter_limit_is_respected_by_a_real_connection(tmp_path: Path) -> None:
    """With the limit lowered to 100 (8 rows), SQLite itself accepts every statement."""
    conn = connect(tmp_path / "q.db")
    apply_schema(conn)
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 100)
    tasks = [new_task(task_id=f"t{i:03d}", priority=i % 5) for i in range(37)]
    limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    for sql, params in insert_statements(tasks, 3, limit):
        assert len(params) <= 100
        conn.execute(sql, params)
    stored = [row_to_task(r) for r in conn.execute(f"SELECT {COLUMNS} FROM tasks ORDER BY id")]  # noqa: S608
    assert [(t.id, t.state.value, t.priority, dict(t.args)) for t in stored] == [
        (t.id, "QUEUED", t.priority, {"path": "a.txt"}) for t in tasks
    ]


def test_a_limit_too_low_for_one_row_is_refused_not_looped_on() -> None:
    with pytest.raises(ValueError, match="cannot hold one row"):
        list(insert_statements([new_task()], 3, PARAMS_PER_ROW - 1))
