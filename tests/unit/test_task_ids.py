"""Task ids: 32 hex digits that sort by creation, unique within and across batches."""

from __future__ import annotations

import re

import pytest

from clawq_server.submission import BATCH_IDS, new_task_id, task_ids

HEX32 = re.compile(r"[0-9a-f]{32}")


def test_batch_ids_keep_submission_order_and_never_repeat() -> None:
    """Within a batch ids follow the calls' order; batches never share an id."""
    first, second = task_ids(5000), task_ids(5000)
    assert all(HEX32.fullmatch(i) for i in first + second)
    assert first == sorted(first)
    assert len(set(first) | set(second)) == 10_000


def test_ids_sort_by_the_time_they_were_made() -> None:
    """An id made later sorts after one made earlier, single or batched."""
    one = new_task_id()
    batch = task_ids(3)
    later = new_task_id()
    assert HEX32.fullmatch(one)
    assert one[:14] <= batch[0][:14] <= later[:14]


def test_a_batch_beyond_the_counter_is_refused() -> None:
    """The counter has six hex digits; a larger batch would repeat ids, so it is refused."""
    with pytest.raises(ValueError, match="at most"):
        task_ids(BATCH_IDS + 1)
