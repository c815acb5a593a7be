"""Merging pages of two stores listed with the same query into one page."""

from __future__ import annotations

from clawq_server.model import Task, TaskPage

Cursor = tuple[float, str]


def merge_pages(first: TaskPage, second: TaskPage, limit: int) -> TaskPage:
    """The first limit tasks of both pages, newest first, each id once (first wins).

    A store that stopped early (it returned a cursor) only vouches for the tasks down to
    that cursor, so tasks of the other store past it wait for the next page; the
    next cursor continues from the last task handed out.
    """
    frontier = max(
        (page.next_cursor for page in (first, second) if page.next_cursor is not None),
        default=None,
    )
    merged: dict[str, Task] = {}
    for task in (*first.tasks, *second.tasks):
        if task.id not in merged and (frontier is None or _key(task) >= frontier):
            merged[task.id] = task
    ordered = sorted(merged.values(), key=_key, reverse=True)
    page = ordered[:limit]
    if len(ordered) > limit:
        return TaskPage(page, _key(page[-1]))
    if frontier is not None:
        return TaskPage(page, _key(page[-1]) if page else frontier)
    return TaskPage(page, None)


def _key(task: Task) -> Cursor:
    return (task.created.timestamp(), task.id)
