"""Admission of calls: policy, validation, rate limits and audit before anything is queued."""

from __future__ import annotations

import hashlib
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

import orjson

from clawq_server.audit import AuditSink, new_record
from clawq_server.errors import AuditUnavailable, BackendUnavailable, ClawqError, InvalidArgument
from clawq_server.model import NO_DELAY, Call, JsonObject, NewTask, RetryPolicy, utcnow
from clawq_server.policy.limits import RateLimiter
from clawq_server.policy.principal import Principal
from clawq_server.tools.registry import ToolRegistry

IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._:-]{1,128}")
MAX_PRIORITY = 10
MAX_ATTEMPTS = 100
# A refused call's tool name is recorded as sent, up to this length.
MAX_AUDITED_TOOL = 128
# A batch refused as a whole is recorded with the counts of its most frequent tools.
AUDITED_TOOLS = 20
MAX_DELAY = timedelta(days=366)
BATCH_IDS = 1 << 24

PermissionCheck = Callable[[Principal, str, dict[str, object]], None]


def new_task_id() -> str:
    """A 32-hex-digit id that sorts by creation time (µs), so index inserts append.

    14 digits of microseconds since the epoch, then 72 random bits. Ids are not secrets
    (every lookup is scoped to the principal), so the fast PRNG is enough.
    """
    return f"{time.time_ns() // 1000:014x}{random.getrandbits(72):018x}"


def task_ids(count: int) -> list[str]:
    """count ids for one batch, in order: one time stamp and 48 random bits, then a counter.

    Same 32-hex-digit form as new_task_id, at a fraction of its cost per id; ids from
    two batches started in the same microsecond differ in their random bits.
    """
    if count > BATCH_IDS:
        raise ValueError(f"at most {BATCH_IDS} ids per batch")
    prefix = f"{time.time_ns() // 1000:014x}{random.getrandbits(48):012x}"
    return [f"{prefix}{i:06x}" for i in range(count)]


def args_hash(tool: str, args_json: bytes) -> str:
    """A digest of a call's tool and canonical arguments (idempotency and cache keys)."""
    return hashlib.blake2b(tool.encode() + b"\0" + args_json, digest_size=16).hexdigest()


def _check_options(call: Call) -> None:
    if call.idempotency_key and not IDEMPOTENCY_KEY.fullmatch(call.idempotency_key):
        raise InvalidArgument.field(
            "idempotency_key", "must be 1-128 characters from A-Z a-z 0-9 . _ : -"
        )
    if not -MAX_PRIORITY <= call.priority <= MAX_PRIORITY:
        raise InvalidArgument.field(
            "priority", f"must be between -{MAX_PRIORITY} and {MAX_PRIORITY}"
        )
    if not 0 <= call.max_attempts <= MAX_ATTEMPTS:
        raise InvalidArgument.field("max_attempts", f"must be between 0 and {MAX_ATTEMPTS}")
    if call.delay < NO_DELAY:
        raise InvalidArgument.field("delay", "must not be negative")
    if call.delay > MAX_DELAY:
        raise InvalidArgument.field("delay", f"must be at most {MAX_DELAY.days} days")


def _digest(args: JsonObject) -> JsonObject:
    """The SHA-256 of args as canonical JSON (what is not JSON written as text)."""
    data = orjson.dumps(args, option=orjson.OPT_SORT_KEYS, default=str)
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


class Admitted(NamedTuple):
    """A call that passed admission, ready to store."""

    task: NewTask
    call: Call


class Admission:
    """Turns calls into storable tasks, or into the error that refuses each one.

    Runs synchronously per call (no awaits), so a batch of thousands costs one loop.
    """

    def __init__(
        self,
        registry: ToolRegistry,
        permissions: PermissionCheck,
        limiter: RateLimiter,
        audit: AuditSink,
        retry: RetryPolicy,
    ) -> None:
        self._registry = registry
        self._permissions = permissions
        self._limiter = limiter
        self._audit = audit
        self._retry = retry

    def admit(self, principal: Principal, call: Call) -> Admitted:
        """Check one call; raises the ClawqError that refuses it (audited)."""
        try:
            if not self._audit.accepting:
                raise AuditUnavailable
            return self._admit(principal, call, utcnow(), new_task_id())
        except ClawqError as error:
            self.audit_refusal(principal, call, error)
            raise

    def admit_many(
        self, principal: Principal, calls: Sequence[Call]
    ) -> list[Admitted | ClawqError]:
        """Check many calls; each position holds the admitted task or its error."""
        try:
            if not self._audit.accepting:
                raise AuditUnavailable
            self._limiter.take(principal, len(calls))
        except ClawqError as error:
            self.audit_batch_refusal(principal, calls, error)
            return [error] * len(calls)
        now = utcnow()
        out: list[Admitted | ClawqError] = []
        for call, task_id in zip(calls, task_ids(len(calls)), strict=True):
            try:
                out.append(self._admit(principal, call, now, task_id, rate=False))
            except ClawqError as error:
                self.audit_refusal(principal, call, error)
                out.append(error)
        return out

    def audit_refusal(self, principal: Principal, call: Call, error: ClawqError) -> None:
        """Record a refused call."""
        self.audit_request(principal, call.tool, dict(call.args), error)

    def unstored(
        self,
        principal: Principal,
        admitted: Sequence[Admitted],
        error: ClawqError,
        *,
        charged: int,
    ) -> None:
        """Admitted calls that were then refused together (with a bad call of an atomic
        batch, by a full queue): audited, and the rate tokens of all but charged of them
        returned, so a refused batch leaves no debt yet every refused request still costs.

        Calls whose store lost its reply may be stored and run: each keeps its token and
        is recorded with its task id and the outcome UNKNOWN.
        """
        if isinstance(error, BackendUnavailable) and error.maybe_applied:
            for item in admitted:
                self._audit.record(
                    new_record(
                        principal.name,
                        item.task.tool,
                        item.call.args,
                        task_id=item.task.id,
                        decision="allow",
                        reason=error.reason,
                        message=error.message,
                        outcome="UNKNOWN",
                    )
                )
            return
        self._limiter.give_back(principal, len(admitted) - charged)
        if len(admitted) == 1:
            self.audit_refusal(principal, admitted[0].call, error)
        else:
            self.audit_batch_refusal(principal, [a.call for a in admitted], error)

    def audit_batch_refusal(
        self, principal: Principal, calls: Sequence[Call], error: ClawqError
    ) -> None:
        """Record calls refused together for one reason (the rate limit, a full queue) as one
        line: a throttled client must not be able to grow the log a line per call."""
        if calls:
            tools = dict(Counter(call.tool for call in calls).most_common(AUDITED_TOOLS))
            self.audit_request(principal, "", {"calls": len(calls), "tools": tools}, error)

    def audit_request(
        self, principal: Principal, tool: str, args: JsonObject, error: ClawqError
    ) -> None:
        """Record a refused request, also one too malformed to be a Call.

        While the log is behind, a refusal keeps a digest of the arguments instead of them:
        what it holds in memory meanwhile must not grow with what callers send.
        """
        kept = _digest(args) if isinstance(error, AuditUnavailable) else args
        self._audit.record(
            new_record(
                principal.name,
                tool[:MAX_AUDITED_TOOL],
                kept,
                decision="deny",
                reason=error.reason,
                message=error.message,
                outcome="REFUSED",
            )
        )

    def audit_cached(self, principal: Principal, task: NewTask, args: JsonObject) -> None:
        """Record a call answered from the cache (it never reaches a worker's audit link)."""
        self._audit.record(
            new_record(
                principal.name,
                task.tool,
                args,
                task_id=task.id,
                decision="allow",
                reason="",
                outcome="SUCCEEDED",
                cached=True,
                duration_ms=0.0,
            )
        )

    def _admit(
        self, principal: Principal, call: Call, now: datetime, task_id: str, *, rate: bool = True
    ) -> Admitted:
        _check_options(call)
        found = self._registry.find(call.tool)
        if found is None:
            raise InvalidArgument.field(
                "tool", f"no tool named {call.tool!r}", reason="TOOL_NOT_FOUND"
            )
        args = found.validate(call.args)
        self._permissions(principal, call.tool, args)
        if rate:
            self._limiter.take(principal)
        args_json = orjson.dumps(args, option=orjson.OPT_SORT_KEYS)
        # Positional: batches build thousands of tasks, and keywords cost a third more.
        task = NewTask(
            task_id,
            principal.name,
            call.tool,
            args_json,
            # Only a reused idempotency key is ever compared by it.
            args_hash(call.tool, args_json) if call.idempotency_key else "",
            found.tool.side_effect,
            call.idempotency_key,
            call.priority,
            call.max_attempts or self._retry.default_max_attempts,
            call.idempotent,
            now,
            now + call.delay if call.delay else now,
        )
        return Admitted(task, call)
