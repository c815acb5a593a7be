"""A batch's script arguments are exactly its tasks' own, whatever the batch mixes."""

from __future__ import annotations

from datetime import timedelta

import orjson

from clawq_server.queue.redis_args import submit_batch
from tests.contract.helpers import new_task

FIELDS_PER_TASK = 9


def test_a_mixed_batch_encodes_each_task_as_it_would_alone() -> None:
    """Principals, tools, priorities, attempts, delays and stamps that differ task to task."""
    base = new_task()
    tasks = [
        new_task("read_file", principal="alice"),
        new_task("read_file", principal="bob"),
        new_task("write_file", principal="alice", idempotent=True),
        new_task("read_file", principal="alice", priority=3, max_attempts=0, key="k1"),
        new_task("read_file", principal="alice", delay=5.0),
        new_task("delete_file", principal="bob", max_attempts=7),
    ]
    # Admission stamps a batch once: share one created (and undelayed not_before) object,
    # then give the last two tasks a later stamp of their own.
    later = base.created + timedelta(seconds=1)
    tasks = [t._replace(created=base.created, not_before=base.created) for t in tasks[:4]] + [
        tasks[4]._replace(created=later),
        tasks[5]._replace(created=later, not_before=later),
    ]
    fields, records = submit_batch(tasks, 4)
    alone = [submit_batch([task], 4) for task in tasks]
    assert orjson.loads(fields) == [f for one, _ in alone for f in orjson.loads(one)]
    assert records == b"".join(record for _, record in alone)
    assert len(orjson.loads(fields)) == FIELDS_PER_TASK * len(tasks)
