"""How the CLI shows things: plain dicts for --json, short text for people."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from clawq.errors import Error
from clawq.types import CacheStats, QueueStats, Result, Task, ToolInfo


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _jsonable(value: Any) -> Any:
    """Arguments as JSON: bytes as text (invalid UTF-8 replaced)."""
    if isinstance(value, bytes):
        return _text(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def result_json(result: Result) -> dict[str, Any]:
    """A Result as a JSON object."""
    return {
        "task_id": result.task_id,
        "output": result.output,
        "stderr": result.stderr,
        "truncated": result.truncated,
        "stderr_truncated": result.stderr_truncated,
        "exit_code": result.exit_code,
        "signal": result.signal,
        "payload": result.payload,
        "cached": result.cached,
    }


def task_json(task: Task) -> dict[str, Any]:
    """A Task as a JSON object."""
    error = task.error
    return {
        "id": task.id,
        "tool": task.tool,
        "args": _jsonable(task.args),
        "state": task.state,
        "done": task.done,
        "attempt": task.attempt,
        "max_attempts": task.max_attempts,
        "priority": task.priority,
        "idempotency_key": task.idempotency_key,
        "created": _time(task.created),
        "not_before": _time(task.not_before),
        "started": _time(task.started),
        "finished": _time(task.finished),
        "result": result_json(task.result) if task.result else None,
        "error": (
            {"code": error.code, "reason": error.reason, "message": error.message}
            if error
            else None
        ),
    }


def error_json(error: Error) -> dict[str, Any]:
    """An RPC error as a JSON object."""
    return {
        "code": error.code.name,
        "reason": error.reason,
        "message": error.message,
        "field_violations": [{"field": f, "description": d} for f, d in error.field_violations],
    }


def tool_json(tool: ToolInfo) -> dict[str, Any]:
    """A ToolInfo as a JSON object."""
    return {
        "name": tool.name,
        "description": tool.description,
        "side_effect": tool.side_effect,
        "cacheable": tool.cacheable,
        "schema": tool.schema,
    }


def queue_json(stats: QueueStats) -> dict[str, Any]:
    """QueueStats as a JSON object."""
    return {
        "ready": stats.ready,
        "ready_by_priority": {str(p): n for p, n in stats.ready_by_priority.items()},
        "in_flight": stats.in_flight,
        "delayed": stats.delayed,
        "dead": stats.dead,
    }


def cache_json(stats: CacheStats) -> dict[str, Any]:
    """CacheStats as a JSON object."""
    return {
        "enabled": stats.enabled,
        "tools": [
            {
                "tool": t.tool,
                "hits": t.hits,
                "misses": t.misses,
                "hit_ratio": t.hit_ratio,
                "bytes": t.bytes,
                "entries": t.entries,
                "evictions": t.evictions,
            }
            for t in stats.tools
        ],
    }


def print_json(value: Any) -> None:
    """One JSON document on stdout."""
    print(json.dumps(value, indent=2, sort_keys=False))


def task_text(task: Task) -> str:
    """A task as a few aligned lines."""
    lines = [
        f"id        {task.id}",
        f"tool      {task.tool}",
        f"args      {json.dumps(_jsonable(task.args))}",
        f"state     {task.state} (attempt {task.attempt}/{task.max_attempts})",
        f"priority  {task.priority}",
    ]
    if task.idempotency_key:
        lines.append(f"key       {task.idempotency_key}")
    for name, value in (("created", task.created), ("started", task.started)):
        if value:
            lines.append(f"{name:<9} {value.isoformat()}")
    if task.finished:
        lines.append(f"finished  {task.finished.isoformat()}")
    if task.error:
        lines.append(f"error     {task.error.code} {task.error.reason}: {task.error.message}")
    if task.result:
        lines.append(f"result    {_result_summary(task.result)}")
    return "\n".join(lines)


def _result_summary(result: Result) -> str:
    parts = [f"{len(result.data)} bytes of output"]
    if result.truncated:
        parts.append("truncated")
    if result.exit_code is not None:
        parts.append(f"exit code {result.exit_code}")
    if result.signal:
        parts.append(f"signal {result.signal}")
    if result.cached:
        parts.append("cached")
    return ", ".join(parts)


def write_result(result: Result) -> None:
    """A result as its raw output on stdout (and stderr); structured payloads as JSON."""
    if result.data or not result.payload:
        sys.stdout.buffer.write(result.data)
        sys.stdout.flush()
    else:
        print_json(result.payload)
    if result.stderr_data:
        sys.stderr.buffer.write(result.stderr_data)
        sys.stderr.flush()


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    """Rows as left-aligned columns under a header."""
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def one_line(text: str) -> str:
    """Text folded onto one line, for messages on stderr."""
    return " ".join(text.split())


def cache_table(stats: CacheStats) -> str:
    """Per-tool cache figures as a table."""
    rows = [
        (t.tool, t.hits, t.misses, f"{t.hit_ratio:.2f}", t.entries, t.bytes, t.evictions)
        for t in stats.tools
    ]
    return table(rows, ("TOOL", "HITS", "MISSES", "RATIO", "ENTRIES", "BYTES", "EVICTED"))
