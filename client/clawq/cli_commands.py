"""The client-side `clawq` commands: their arguments and what each one does."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clawq import cli_render as render
from clawq.cli_submit_file import submit_file
from clawq.errors import TaskFailed
from clawq.sync import Client
from clawq.types import Call, Task


class UsageError(Exception):
    """The command line asks for something impossible; exit code 2."""


def parse_value(text: str) -> Any:
    """A key=value value: ``@file`` reads the file's text, JSON when it parses, else the text."""
    if text.startswith("@"):
        return Path(text[1:]).read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """Tool arguments from ``key=value`` words."""
    args: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"expected key=value, got {item!r}")
        args[key] = parse_value(value)
    return args


def _call(ns: argparse.Namespace, **options: Any) -> Call:
    return Call.of(ns.tool, parse_assignments(ns.args), **options)


def cmd_exec(client: Client, ns: argparse.Namespace) -> int:
    """Run a tool and print its output; exit 1 when the task fails."""
    try:
        result = client.execute_call(_call(ns), timeout=ns.timeout)
    except TaskFailed as exc:
        if exc.task.result and not ns.json:
            render.write_result(exc.task.result)
        raise
    if ns.json:
        render.print_json(render.result_json(result))
    else:
        render.write_result(result)
    return 0


def cmd_submit(client: Client, ns: argparse.Namespace) -> int:
    """Queue a call and print its task id."""
    call = _call(
        ns,
        idempotency_key=ns.idempotency_key,
        priority=ns.priority,
        delay=ns.delay,
        max_attempts=ns.max_attempts,
        idempotent=ns.idempotent,
    )
    task_id = client.submit_call(call)
    if ns.json:
        render.print_json({"task_id": task_id})
    else:
        print(task_id)
    return 0


def _show(task: Task, ns: argparse.Namespace) -> None:
    if ns.json:
        render.print_json(render.task_json(task))
    else:
        print(render.task_text(task))


def cmd_get(client: Client, ns: argparse.Namespace) -> int:
    """Print one task."""
    _show(client.get(ns.id), ns)
    return 0


def cmd_wait(client: Client, ns: argparse.Namespace) -> int:
    """Wait for a task; exit 0 when it succeeded, 1 when it failed or is still running."""
    task = client.wait(ns.id, timeout=ns.timeout)
    _show(task, ns)
    return 0 if task.state == "SUCCEEDED" else 1


def cmd_cancel(client: Client, ns: argparse.Namespace) -> int:
    """Cancel a task and print it."""
    _show(client.cancel(ns.id), ns)
    return 0


def _limited(pages: Iterator[list[Task]], limit: int) -> list[Task]:
    tasks: list[Task] = []
    for page in pages:
        tasks.extend(page[: limit - len(tasks)])
        if len(tasks) >= limit:
            break
    return tasks


def _print_tasks(tasks: list[Task], ns: argparse.Namespace) -> None:
    if ns.json:
        render.print_json([render.task_json(t) for t in tasks])
        return
    rows = [
        (t.id, t.state, t.tool, t.created.isoformat(timespec="seconds") if t.created else "")
        for t in tasks
    ]
    print(render.table(rows, ("ID", "STATE", "TOOL", "CREATED")))


def cmd_tasks(client: Client, ns: argparse.Namespace) -> int:
    """List the newest tasks, filtered by state and tool."""
    pages = client.list_tasks(state=ns.state, tool=ns.tool, page_size=min(ns.limit, 1000))
    _print_tasks(_limited(pages, ns.limit), ns)
    return 0


def cmd_tools(client: Client, ns: argparse.Namespace) -> int:
    """List the tools with their side effects."""
    tools = client.tools()
    if ns.json:
        render.print_json([render.tool_json(t) for t in tools])
    else:
        rows = [
            (t.name, t.side_effect, "yes" if t.cacheable else "no", t.description) for t in tools
        ]
        print(render.table(rows, ("TOOL", "SIDE EFFECT", "CACHEABLE", "DESCRIPTION")))
    return 0


def cmd_cache(client: Client, ns: argparse.Namespace) -> int:
    """Cache statistics, clearing and invalidation."""
    if ns.action == "stats":
        stats = client.cache_stats()
        if ns.json:
            render.print_json(render.cache_json(stats))
            return 0
        print(f"cache {'enabled' if stats.enabled else 'disabled'}")
        print(render.cache_table(stats))
        return 0
    if ns.action == "clear":
        removed = client.cache_clear()
    elif not (ns.prefix or ns.pattern):
        raise UsageError("cache invalidate needs --prefix or --pattern")
    else:
        removed = client.cache_invalidate(path_prefix=ns.prefix or "", pattern=ns.pattern or "")
    render.print_json({"removed": removed}) if ns.json else print(f"removed {removed}")
    return 0


def cmd_queue(client: Client, ns: argparse.Namespace) -> int:
    """Queue depths and counts."""
    stats = client.queue_stats()
    if ns.json:
        render.print_json(render.queue_json(stats))
        return 0
    print(f"ready      {stats.ready}")
    for priority, ready in stats.ready_by_priority.items():
        print(f"  priority {priority:>3}: {ready}")
    print(f"in flight  {stats.in_flight}\ndelayed    {stats.delayed}\ndead       {stats.dead}")
    return 0


def cmd_dead(client: Client, ns: argparse.Namespace) -> int:
    """List dead letters or requeue them."""
    if ns.action == "list":
        _print_tasks(_limited(client.dead_letters(page_size=min(ns.limit, 1000)), ns.limit), ns)
        return 0
    if bool(ns.ids) == ns.all:
        raise UsageError("dead requeue needs task ids or --all (not both)")
    requeued = client.requeue_dead(None if ns.all else ns.ids)
    render.print_json({"requeued": requeued}) if ns.json else print(f"requeued {requeued}")
    return 0


def cmd_submit_file(client: Client, ns: argparse.Namespace) -> int:
    """Stream the calls of a JSON-lines file; exit 1 when any was rejected."""
    return submit_file(client, Path(ns.file), batch_size=ns.batch_size, as_json=ns.json)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add every client-side command to the subparsers."""

    def add(name: str, handler: Any, text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(
            name, parents=[common], help=text, description=text
        )
        parser.set_defaults(handler=handler)
        return parser

    run = add("exec", cmd_exec, "run a tool and print its output (exit 1 if it fails)")
    run.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")
    submit = add("submit", cmd_submit, "queue a tool call and print its task id")
    for parser in (run, submit):
        parser.add_argument("tool", help="tool name, e.g. read_file")
        parser.add_argument("args", nargs="*", metavar="key=value", help="JSON, text or @file")
    submit.add_argument("--idempotency-key", default="", help="same key, same task")
    submit.add_argument("--priority", type=int, default=0, help="-10..10, higher runs first")
    submit.add_argument("--delay", type=float, default=None, help="seconds before it may run")
    submit.add_argument("--max-attempts", type=int, default=0, help="0: the server's default")
    submit.add_argument("--idempotent", action="store_true", help="safe to run more than once")
    for name, handler, text in (
        ("get", cmd_get, "show a task"),
        ("wait", cmd_wait, "wait for a task (exit 0 if it succeeded, else 1)"),
        ("cancel", cmd_cancel, "cancel a queued or running task"),
    ):
        add(name, handler, text).add_argument("id", help="task id")
    sub.choices["wait"].add_argument("--timeout", type=float, default=60.0, help="seconds")
    _register_lists(add)


def _register_lists(add: Any) -> None:
    tasks = add("tasks", cmd_tasks, "list the newest tasks")
    tasks.add_argument("--state", help="QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED or DEAD")
    tasks.add_argument("--tool", help="only this tool")
    tasks.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    add("tools", cmd_tools, "list the tools")
    cache = add("cache", cmd_cache, "cache statistics, clear, invalidate")
    cache.add_argument("action", choices=["stats", "clear", "invalidate"])
    cache.add_argument("--prefix", help="invalidate results of paths under this prefix")
    cache.add_argument("--pattern", help="invalidate results of paths matching this glob")
    queue = add("queue", cmd_queue, "queue statistics")
    queue.add_argument("action", choices=["stats"])
    dead = add("dead", cmd_dead, "list or requeue dead letters")
    dead.add_argument("action", choices=["list", "requeue"])
    dead.add_argument("ids", nargs="*", help="task ids to requeue")
    dead.add_argument("--all", action="store_true", help="requeue every dead letter")
    dead.add_argument("--limit", type=int, default=100, help="list at most this many")
    submit_many = add("submit-file", cmd_submit_file, "stream calls from a JSON-lines file")
    submit_many.add_argument("file", help='one call per line: {"tool": ..., "args": {...}}')
    submit_many.add_argument("--batch-size", type=int, default=1000, help="calls per batch")
