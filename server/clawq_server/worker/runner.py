"""An in-process worker: leases tasks, runs them through the chain, heartbeats, completes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import timedelta

from clawq_server.errors import (
    BackendUnavailable,
    ClawqError,
    InvalidArgument,
    LeaseLost,
    PolicyDenied,
    ToolFailure,
)
from clawq_server.model import Completion, Lease, SideEffect, TaskError, ToolResult
from clawq_server.policy.principal import Principal
from clawq_server.queue.base import TaskQueue, give_back
from clawq_server.tools.base import ToolContext
from clawq_server.tools.registry import ToolRegistry
from clawq_server.worker.middleware import Next, ToolInvocation

log = logging.getLogger(__name__)
# Retry pauses of a completion while the backend is away: first, and the cap.
COMPLETE_RETRY_S = (0.05, 1.0)
PrincipalLookup = Callable[[str], Principal | None]
LEASE_BATCH_DIVISOR = 4
# How often a worker held back from leasing (see Worker) looks again.
HELD_BACK_S = 0.1


def _always() -> bool:
    return True


@dataclass(slots=True)
class _Running:
    lease: Lease
    cancelled: asyncio.Event
    job: asyncio.Task[None] | None = None
    lost: bool = False


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """How a worker leases: concurrency, lease length, which tools, shutdown grace.

    lease_gather_s: how long a busy worker with fewer than a quarter of its slots free
    waits for more to free before leasing for the few it has.
    """

    concurrency: int = 4
    lease_s: float = 30.0
    lease_gather_s: float = 0.01
    tools: Collection[str] | None = None
    grace_s: float = 10.0
    worker_id: str = field(default_factory=lambda: f"w-{secrets.token_hex(4)}")


def completion_for(result: ToolResult) -> Completion:
    """A tool result as a completion: a process that failed or timed out fails the task."""
    payload = result.payload or {}
    if payload.get("timed_out") or payload.get("idle_timed_out"):
        kind = "idle timeout" if payload.get("idle_timed_out") else "timeout"
        return Completion(result, TaskError("DEADLINE_EXCEEDED", "TIMEOUT", f"killed by {kind}"))
    if result.signal:
        error = TaskError("ABORTED", "KILLED_BY_SIGNAL", f"ended by signal {result.signal}")
        return Completion(result, error)
    if result.exit_code not in (None, 0):
        return Completion(
            result, TaskError("UNKNOWN", "NONZERO_EXIT", f"exit status {result.exit_code}")
        )
    return Completion(result)


def completion_for_error(error: Exception, rerunnable: bool) -> Completion:
    """An exception raised by a run as a completion.

    A retryable error is retried only when the task may run again (read-only or marked
    idempotent): it may have come after the side effect (a write, then a failed cache
    invalidation), and a side effect is never repeated by surprise.
    """
    if isinstance(error, ToolFailure):
        return Completion(
            error=TaskError(error.code, error.reason, error.message),
            retryable=error.retryable and rerunnable,
        )
    if isinstance(error, PolicyDenied):
        return Completion(error=TaskError("PERMISSION_DENIED", error.reason, error.message))
    if isinstance(error, InvalidArgument):
        return Completion(error=TaskError("INVALID_ARGUMENT", error.reason, error.message))
    if isinstance(error, ClawqError):
        return Completion(
            error=TaskError("INTERNAL", error.reason, error.message),
            retryable=error.retryable and rerunnable,
        )
    log.exception("tool run failed unexpectedly", exc_info=error)
    return Completion(
        error=TaskError("INTERNAL", "INTERNAL", "internal error"), retryable=rerunnable
    )


class Worker:
    """Runs leased tasks with bounded concurrency until stopped."""

    def __init__(
        self,
        queue: TaskQueue,
        registry: ToolRegistry,
        principals: PrincipalLookup,
        chain: Next,
        settings: WorkerSettings,
        *,
        may_lease: Callable[[], bool] = _always,
    ) -> None:
        """may_lease() false holds leasing back: the audit log cannot take the runs' records."""
        self._queue = queue
        self._may_lease = may_lease
        self._registry = registry
        self._principals = principals
        self._chain = chain
        self._settings = settings
        self._running: dict[str, _Running] = {}
        self._slot = asyncio.Event()
        self._stopping = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []

    @property
    def in_flight(self) -> int:
        """Tasks being run now."""
        return len(self._running)

    async def start(self) -> None:
        """Start leasing and heartbeating."""
        self._loops = [
            asyncio.create_task(self._lease_loop(), name="worker-lease"),
            asyncio.create_task(self._heartbeat_loop(), name="worker-heartbeat"),
        ]

    async def stop(self) -> None:
        """Stop leasing; let in-flight runs finish within the grace period, then give them back."""
        self._stopping.set()
        self._slot.set()
        lease_loop = self._loops[0] if self._loops else None
        if lease_loop is not None:
            lease_loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lease_loop
        jobs = [r.job for r in self._running.values() if r.job is not None]
        if jobs:
            _, pending = await asyncio.wait(jobs, timeout=self._settings.grace_s)
            for job in pending:
                job.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for loop in self._loops[1:]:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop

    async def _lease_loop(self) -> None:
        lease_for = timedelta(seconds=self._settings.lease_s)
        # Under load, a lease waits briefly for a quarter of the slots to be free rather
        # than going out for every slot that frees: a lease is a backend round trip
        # whatever its size. The wait is bounded, so long runs never keep a slot idle.
        batch = max(1, self._settings.concurrency // LEASE_BATCH_DIVISOR)
        gathered = False
        while not self._stopping.is_set():
            free = self._settings.concurrency - len(self._running)
            if free <= 0:
                self._slot.clear()
                await self._slot.wait()
                continue
            if free < batch and self._running and not gathered:
                self._slot.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._slot.wait(), self._settings.lease_gather_s)
                gathered = True
                continue
            gathered = False
            if not self._may_lease():
                await asyncio.sleep(HELD_BACK_S)
                continue
            try:
                leases = await self._queue.lease(
                    self._settings.worker_id, self._settings.tools, free, lease_for, wait=1.0
                )
            except ClawqError as error:
                log.warning("lease failed: %s", error.message)
                await asyncio.sleep(0.5)
                continue
            if leases and not self._may_lease():
                await give_back(self._queue, leases)  # held back while this lease waited
                continue
            for lease in leases:
                running = _Running(lease, asyncio.Event())
                self._running[lease.task.id] = running
                running.job = asyncio.create_task(self._run(running), name=f"task-{lease.task.id}")

    async def _heartbeat_loop(self) -> None:
        lease_for = timedelta(seconds=self._settings.lease_s)
        while True:
            await asyncio.sleep(self._settings.lease_s / 3)
            held = [(r.lease.task.id, r.lease.token) for r in self._running.values()]
            if not held:
                continue
            try:
                outcome = await self._queue.heartbeat(held, lease_for)
            except ClawqError as error:
                log.warning("heartbeat failed: %s", error.message)
                continue
            for task_id in outcome.cancelled:
                if task_id in self._running:
                    self._running[task_id].cancelled.set()
            for task_id in outcome.lost:
                running = self._running.get(task_id)
                if running is not None and running.job is not None:
                    log.info("lease of %s lost at heartbeat; its run is stopped", task_id)
                    running.lost = True
                    running.job.cancel()

    async def _run(self, running: _Running) -> None:
        lease = running.lease
        try:
            completion = await self._execute(running)
            await self._complete(running, completion)
        except asyncio.CancelledError:
            if not running.lost:
                await self._interrupted(lease)
        except LeaseLost:
            log.info("lease of %s lost before completion", lease.task.id)
        except ClawqError as error:
            log.warning("completing %s failed: %s", lease.task.id, error.message)
        finally:
            # After a lost lease this worker may hold the same task again under a new
            # lease; only this run's own entry is removed.
            if self._running.get(lease.task.id) is running:
                del self._running[lease.task.id]
            self._slot.set()

    async def _complete(self, running: _Running, completion: Completion) -> None:
        """Report an outcome, retrying while the backend is unreachable.

        Dropping it would turn finished work into WORKER_LOST after a short outage. The
        run stays in _running meanwhile, so heartbeats resume with the backend: they either
        keep the lease (the retry then lands) or report it lost (the run is cancelled).
        """
        lease = running.lease
        pause, cap = COMPLETE_RETRY_S
        while True:
            try:
                await self._queue.complete(lease.task.id, lease.token, completion)
                return
            except BackendUnavailable as error:
                if pause == COMPLETE_RETRY_S[0]:
                    log.warning("completing %s failed, retrying: %s", lease.task.id, error.message)
            await asyncio.sleep(pause)
            pause = min(pause * 2, cap)

    async def _execute(self, running: _Running) -> Completion:
        task = running.lease.task
        principal = self._principals(task.principal)
        if principal is None:
            return Completion(
                error=TaskError("PERMISSION_DENIED", "POLICY_DENIED", "unknown principal")
            )
        rerunnable = task.side_effect is SideEffect.READ_ONLY or task.idempotent
        try:
            tool = self._registry.get(task.tool)
            timeout = task.args.get("timeout_s")
            ctx = ToolContext(
                principal, task.id, float(timeout) if timeout else None, running.cancelled
            )
            result = await self._chain(ToolInvocation(task, tool, task.args, ctx))
        except Exception as error:
            return completion_for_error(error, rerunnable)
        if running.cancelled.is_set():
            return Completion(
                result, TaskError("CANCELLED", "CANCELLED", "cancelled while running")
            )
        return completion_for(result)

    async def _interrupted(self, lease: Lease) -> None:
        """A run cut short by shutdown: give back what may run again, fail the rest."""
        task = lease.task
        with contextlib.suppress(ClawqError):
            if task.side_effect is SideEffect.READ_ONLY or task.idempotent:
                await self._queue.release(task.id, lease.token)
            else:
                error = TaskError("ABORTED", "WORKER_LOST", "worker stopped during the run")
                await self._queue.complete(task.id, lease.token, Completion(error=error))
