"""The tamper-evident audit log: one hash-chained JSON line per call, written off the loop."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from clawq_server.model import utcnow

log = logging.getLogger(__name__)
GENESIS = "0" * 64
FLUSH_INTERVAL_S = 0.05
RETRY_S = 1.0
# Records waiting to be written before callers are told to stop taking calls; twice this,
# records are folded into counts (see AuditLog.record).
MAX_BACKLOG = 100_000
# What a folded record keeps of the records it counts.
_FOLDED_BY = ("principal", "decision", "reason", "outcome")
REDACTED = "[REDACTED]"
SECRET_KEYS = re.compile(r"(?i)(token|secret|password|passwd|api[_-]?key|authorization|credential)")
DEFAULT_SECRET_VALUES = (
    r"(?i)bearer\s+\S+",
    r"\b(?:sk|ghp|gho|xox[bap])[-_][A-Za-z0-9_-]{8,}",
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
)


class AuditSink(Protocol):
    """Where audit records go."""

    @property
    def accepting(self) -> bool:
        """False while records cannot be written as fast as they come: take no new calls."""

    def record(self, entry: Mapping[str, Any]) -> None:
        """Queue one record; never blocks. The sink may keep entry as it is: hand over a
        mapping nobody changes afterwards."""


class NullAudit:
    """An audit sink that keeps nothing (auditing switched off)."""

    @property
    def accepting(self) -> bool:
        """Always: nothing is kept, so nothing can fall behind."""
        return True

    def record(self, entry: Mapping[str, Any]) -> None:
        """Drop the record."""


class Redactor:
    """Hides secrets in call arguments: env values, secret-named keys, secret-looking text."""

    def __init__(self, patterns: Sequence[str] = ()) -> None:
        self._values = [re.compile(p) for p in (*DEFAULT_SECRET_VALUES, *patterns)]

    def __call__(self, value: Any, key: str = "") -> Any:
        """A copy of value with secrets replaced."""
        if key == "env" and isinstance(value, Mapping):
            return {k: REDACTED for k in value}
        if SECRET_KEYS.search(key) and value not in ("", None):
            return REDACTED
        if isinstance(value, Mapping):
            return {k: self(v, str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self(v) for v in value]
        if isinstance(value, str):
            for pattern in self._values:
                value = pattern.sub(REDACTED, value)
        return value


def chain_hash(prev: str, body: bytes) -> str:
    """The hash linking a record body to the one before it."""
    return hashlib.sha256(prev.encode() + body).hexdigest()


def _last_hash(path: Path) -> str:
    if not path.exists() or path.stat().st_size == 0:
        return GENESIS
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - 65536))
        last = f.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
    return str(orjson.loads(last)["hash"])


class AuditLog:
    """Appends records to a JSONL file from a background task, flushing on close.

    A record is never dropped for a failing disk: lines that could not be written are kept
    and written again every RETRY_S, and meanwhile `accepting` is False, so admission
    refuses new calls and workers stop leasing (fail closed). Records that still arrive
    (refusals, runs already under way) are kept up to twice the backlog, then counted per
    principal, decision, reason and outcome and written as one summary record for each.
    """

    def __init__(
        self, path: Path, redactor: Redactor | None = None, *, backlog: int = MAX_BACKLOG
    ) -> None:
        self._path = path
        self._redact = redactor or Redactor()
        self._backlog = backlog
        self._pending: list[Mapping[str, Any]] = []
        self._folded: Counter[tuple[str, ...]] = Counter()
        # Encoded lines a failed write left behind, and how many records they hold.
        self._unwritten: list[bytes] = []
        self._unwritten_records = 0
        self._failing = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._tail = GENESIS  # the hash of the last record encoded
        self._closing = False

    @property
    def accepting(self) -> bool:
        """False while writes fail or the backlog is full."""
        return not self._failing and self._backlogged() < self._backlog

    async def start(self) -> None:
        """Open the file (continuing its chain) and start the writer."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._tail = await asyncio.to_thread(_last_hash, self._path)
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    def record(self, entry: Mapping[str, Any]) -> None:
        """Queue one record, handed over: the caller keeps no reference to change it by.

        Arguments are redacted by the writer, off the path of the call being answered.
        """
        if self._backlogged() < 2 * self._backlog:
            self._pending.append(entry)
        else:
            fields = (str(entry.get(name, "")) for name in _FOLDED_BY)
            self._folded[tuple(fields)] += 1
        self._wake.set()

    async def close(self) -> None:
        """Write everything queued, then stop (giving up, logged, if writes still fail)."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task

    def _backlogged(self) -> int:
        return len(self._pending) + self._unwritten_records

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if not self._closing:
                # Gather what arrives meanwhile: one file write (one thread hop) per interval
                # instead of one per call. A clean shutdown still writes everything.
                await asyncio.sleep(FLUSH_INTERVAL_S)
            self._wake.clear()
            batch, self._pending = self._pending + self._summaries(), []
            if (batch or self._unwritten) and not await self._write_out(batch):
                if self._closing:
                    lost = self._backlogged()
                    log.error("%d audit records lost: the log is not writable", lost)
                    return
                await asyncio.sleep(RETRY_S)
                self._wake.set()
                continue
            if self._closing and not self._pending:
                return

    async def _write_out(self, batch: list[Mapping[str, Any]]) -> bool:
        """True once batch and what was left unwritten before are in the file."""
        try:
            await asyncio.to_thread(self._write, batch)
        except OSError as error:
            if not self._failing:
                log.error("the audit log is not writable, no calls are taken: %s", error)
            self._failing = True
            return False
        if self._failing:
            log.warning("the audit log is writable again")
            self._failing = False
        return True

    def _summaries(self) -> list[Mapping[str, Any]]:
        folded, self._folded = self._folded, Counter()
        now = utcnow().isoformat()
        return [
            {"time": now, **dict(zip(_FOLDED_BY, key, strict=True)), "folded": count}
            for key, count in folded.items()
        ]

    def _write(self, batch: list[Mapping[str, Any]]) -> None:
        try:
            lines, tail = self._encode(batch)
        except Exception:  # a record that cannot be encoded never will be: not kept
            log.exception("%d audit records could not be written", len(batch))
        else:
            self._unwritten.append(lines)
            self._unwritten_records += len(batch)
            self._tail = tail
        if self._unwritten:
            self._append(b"".join(self._unwritten))
        self._unwritten, self._unwritten_records = [], 0

    def _encode(self, batch: list[Mapping[str, Any]]) -> tuple[bytes, str]:
        """The lines of batch, chained on from the last record, and the new last hash."""
        lines = []
        prev = self._tail
        for entry in batch:
            item = {**entry, "prev": prev}
            if "args" in item:
                item["args"] = self._redact(item["args"])
            body = orjson.dumps(item, option=orjson.OPT_SORT_KEYS)
            digest = chain_hash(prev, body)
            lines.append(body[:-1] + b',"hash":"' + digest.encode() + b'"}\n')
            prev = digest
        return b"".join(lines), prev

    def _append(self, data: bytes) -> None:
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            end = os.lseek(fd, 0, os.SEEK_END)
            view, written = memoryview(data), 0
            try:
                while written < len(data):
                    written += os.write(fd, view[written:])
            except OSError:
                if written:
                    # Half a line left in the file would break the chain the retry continues.
                    os.ftruncate(fd, end)
                raise
        finally:
            os.close(fd)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of verifying an audit file: ok, or the first bad line and why."""

    ok: bool
    records: int
    bad_line: int = 0
    problem: str = ""


def verify(path: Path) -> Verdict:
    """Check the chain of an audit file; names the first edited, removed or reordered line."""
    prev = GENESIS
    count = 0
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                record = orjson.loads(raw)
                claimed = record.pop("hash")
            except (orjson.JSONDecodeError, KeyError, TypeError):
                return Verdict(False, count, number, "not a valid audit record")
            if record.get("prev") != prev:
                return Verdict(False, count, number, "does not follow the previous record")
            body = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
            if chain_hash(prev, body) != claimed:
                return Verdict(False, count, number, "content does not match its hash")
            prev = claimed
            count += 1
    return Verdict(True, count)
