"""The Redis key layout of one queue: every key under one prefix and one hash tag."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """Names of a queue's Redis keys.

    Every key starts with ``{prefix:queue}``; the braces are a Redis Cluster hash tag,
    so all keys of one queue live in one slot and one Lua script may touch them all.
    The Lua scripts build the same names from ``base`` (see lua/lib.lua); the two must
    change together.
    """

    prefix: str = "clawq"
    queue: str = "default"

    @property
    def base(self) -> str:
        """The hash-tagged stem every key of this queue starts with."""
        return f"{{{self.prefix}:{self.queue}}}"

    @property
    def pattern(self) -> str:
        """A SCAN MATCH pattern covering every key of this queue (braces escaped)."""
        return f"\\{{{self.prefix}:{self.queue}\\}}:*"

    def task(self, task_id: str) -> str:
        """The hash holding one task's record."""
        return f"{self.base}:task:{task_id}"

    def idempotency(self, principal: str, key: str) -> str:
        """The string mapping (principal, idempotency key) to "task_id args_hash".

        The principal's length is part of the name, so no choice of principal and key
        can collide with another pair.
        """
        return f"{self.base}:idem:{len(principal)}:{principal}:{key}"

    def stream(self, priority: int, tool: str) -> str:
        """The ready stream of one (priority, tool) level."""
        return f"{self.base}:ready:{priority}:{tool}"

    @property
    def events(self) -> str:
        """The pub/sub channel of new work and cancel requests (what workers listen to)."""
        return f"{self.base}:events"

    @property
    def done(self) -> str:
        """The pub/sub channel of tasks that became terminal (what waiters listen to)."""
        return f"{self.base}:done"

    @property
    def delayed(self) -> str:
        """The sorted set of QUEUED tasks not yet due, scored by not_before."""
        return f"{self.base}:delayed"

    @property
    def leases(self) -> str:
        """The sorted set of RUNNING tasks, scored by lease expiry."""
        return f"{self.base}:leases"

    @property
    def dead(self) -> str:
        """The sorted set of DEAD tasks (dead letters), scored by when they died."""
        return f"{self.base}:dead"

    @property
    def counts(self) -> str:
        """The hash of counters: queued, and ready tasks per priority (``r:<priority>``)."""
        return f"{self.base}:counts"

    @property
    def active(self) -> str:
        """The set of ``<priority>:<tool>`` levels whose stream may hold ready entries."""
        return f"{self.base}:active"

    @property
    def archive(self) -> str:
        """The stream of finished task ids waiting to be archived (archive=True only)."""
        return f"{self.base}:archive"

    @property
    def levels(self) -> str:
        """The set of every ``<priority>:<tool>`` level whose stream exists (for tidying)."""
        return f"{self.base}:levels"

    def index_principal(self, principal: str) -> str:
        """A principal's tasks scored by created time."""
        return f"{self.base}:idx:p:{len(principal)}:{principal}"

    def index_principal_state(self, principal: str, state: str) -> str:
        """A principal's tasks in one state, scored by created time (lua/lib.lua idx_ps)."""
        return f"{self.base}:idx:ps:{len(principal)}:{principal}:{state}"

    def index_all(self) -> str:
        """Every task scored by created time (unscoped listing)."""
        return f"{self.base}:idx:all"
