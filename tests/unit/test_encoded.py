"""Cache hits answered with pre-serialized bytes equal the normally built response."""

from __future__ import annotations

from dataclasses import replace

from clawq.v1 import task_service_pb2 as ts
from clawq_server.api import convert
from clawq_server.api.encoded import ResultBytes
from clawq_server.model import SideEffect, Task, TaskState, ToolResult, utcnow


def _task(payload: dict[str, object]) -> Task:
    now = utcnow()
    return Task(
        id="t1",
        principal="p",
        tool="list_directory",
        args={"path": "src", "recursive": True},
        state=TaskState.SUCCEEDED,
        side_effect=SideEffect.READ_ONLY,
        attempt=1,
        max_attempts=3,
        priority=2,
        idempotency_key="",
        idempotent=False,
        created=now,
        not_before=now,
        started=now,
        finished=now,
        result=ToolResult(output=b"a\nb\n", payload=payload, cached=True),
    )


def test_spliced_response_parses_to_the_normal_one() -> None:
    """The bytes parse to exactly ExecuteResponse(task=task_to_proto(task), done=True)."""
    entries = [{"path": f"f{i}", "type": "file", "size": i} for i in range(300)]
    task = _task({"entries": entries, "truncated": False})
    spliced = ts.ExecuteResponse.FromString(ResultBytes().execute_response(task).data)
    assert spliced == ts.ExecuteResponse(task=convert.task_to_proto(task), done=True)
    assert len(spliced.task.result.listing.entries) == 300  # typed, as list_directory's are


def test_the_same_result_is_serialized_once_and_another_is_not_confused() -> None:
    """A hit serving the entry's very result reuses its bytes; any other result gets its own."""
    memo = ResultBytes()
    first = _task({"entries": [1, 2]})
    assert first.result is not None
    assert memo.get(first.result, "list_directory") is memo.get(first.result, "list_directory")
    sharing = replace(first.result, stderr=b"other")  # the same payload, another result
    assert memo.get(sharing, "list_directory") != memo.get(first.result, "list_directory")
    other = _task({"entries": [3]})
    assert ts.ExecuteResponse.FromString(memo.execute_response(other).data).task.result.payload[
        "entries"
    ] == [3]
