"""Answers cache hits with bytes already serialized.

A cached listing of 10,000 entries costs ~5 ms to turn into a TaskResult and serialize,
every time it is served, while the lookup itself takes microseconds. The serialized
TaskResult of a cached result is therefore kept beside it (while the result lives: a hit of
the in-process cache answers with its entry's very result; see memo.py) and spliced into the
response bytes: protobuf messages are concatenations of fields, so a Task's bytes followed
by field 11 holding the result bytes is that Task with its result.
"""

from __future__ import annotations

from dataclasses import dataclass

from clawq_server.api import convert
from clawq_server.memo import IdentityMemo
from clawq_server.model import Task, ToolResult

TASK_RESULT_FIELD = 11  # Task.result
RESPONSE_TASK_FIELD = 1  # ExecuteResponse.task
RESPONSE_DONE_TRUE = bytes([(2 << 3) | 0, 1])  # ExecuteResponse.done = true
MEMO_SIZE = 256


@dataclass(frozen=True, slots=True)
class Encoded:
    """A response already serialized; the guarded server's serializer passes it through.

    A wrapper rather than a bytes subclass: grpc's core wants exactly bytes, and turning a
    subclass back into bytes copies it (a cached listing runs to megabytes).
    """

    data: bytes


def varint(value: int) -> bytes:
    """The protobuf base-128 varint encoding of a non-negative integer."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _header(number: int, size: int) -> bytes:
    """The tag and length that precede a length-delimited field of size bytes."""
    return varint((number << 3) | 2) + varint(size)


class ResultBytes:
    """Serialized TaskResults of cached results, most recently used kept."""

    def __init__(self, size: int = MEMO_SIZE) -> None:
        self._memo: IdentityMemo[bytes] = IdentityMemo(size)

    def get(self, result: ToolResult, tool: str) -> bytes:
        """The serialized TaskResult of result, a result of tool."""
        return self._memo.get(
            result, lambda: convert.result_to_proto(result, tool).SerializeToString()
        )

    def execute_response(self, task: Task) -> Encoded:
        """The ExecuteResponse bytes of a finished, cached task."""
        assert task.result is not None  # noqa: S101 - only cached (finished) tasks come here
        bare = convert.task_to_proto(task, with_result=False).SerializeToString()
        result = self.get(task.result, task.tool)
        result_header = _header(TASK_RESULT_FIELD, len(result))
        task_size = len(bare) + len(result_header) + len(result)
        # Joined once: the result may be megabytes, and each concatenation would copy it.
        parts = (_header(RESPONSE_TASK_FIELD, task_size), bare, result_header, result)
        return Encoded(b"".join((*parts, RESPONSE_DONE_TRUE)))
