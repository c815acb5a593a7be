"""The archive protocol: a durable home for finished tasks after the live store forgets them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from clawq_server.model import Task, TaskPage, TaskQuery


class Archive(Protocol):
    """Finished tasks, kept past the live backend's retention and listed like the queue."""

    async def start(self) -> None:
        """Open the archive, creating what it needs."""

    async def close(self) -> None:
        """Commit pending writes and release the archive."""

    async def put_many(self, tasks: Sequence[Task]) -> None:
        """Store finished tasks; a task already archived is replaced (copies are idempotent)."""
        ...

    async def get_many(self, ids: Sequence[str], principal: str | None) -> list[Task]:
        """The archived tasks among ids (of principal, unless None), in the order asked."""
        ...

    async def list_tasks(self, query: TaskQuery) -> TaskPage:
        """Archived tasks newest first, filtered and keyset-paged on (created, id) exactly
        like TaskQueue.list_tasks."""
        ...
