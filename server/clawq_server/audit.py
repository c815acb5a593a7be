"""The tamper-evident audit log: one hash-chained JSON line per call, written off the loop."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import stat
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import orjson

from clawq_server.model import utcnow

log = logging.getLogger(__name__)
GENESIS = "0" * 64
FLUSH_INTERVAL_S = 0.05
RETRY_S = 1.0
# Records waiting to be written before callers are told to stop taking calls; twice this,
# records are folded into counts (see AuditLog.record).
MAX_BACKLOG = 100_000
TAIL_STEP = 1 << 16  # how much of the file's end is read at a time to find its last line
# No record comes near this (a request is at most 64 MiB): a longer last line is no record.
MAX_RECORD_BYTES = 256 << 20
# What a record that cannot be written whole keeps ("prev" holds the chain).
_ALWAYS_KEPT = ("time", "principal", "tool", "task_id", "decision", "reason", "outcome", "prev")
# What a folded record keeps of the records it counts, how much of each, and for how many
# kinds of record at most (the rest are counted together under "*").
_FOLDED_BY = ("principal", "decision", "reason", "outcome")
MAX_FOLDED_TEXT = 128
MAX_FOLDED_KEYS = 1000
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


def new_record(principal: str, tool: str, args: Mapping[str, Any], **fields: Any) -> dict[str, Any]:
    """An audit record: now, who, which tool with which arguments, then fields."""
    return {
        "time": utcnow().isoformat(),
        "principal": principal,
        "tool": tool,
        "args": dict(args),
        **fields,
    }


def chain_hash(prev: str, body: bytes) -> str:
    """The hash linking a record body to the one before it."""
    return hashlib.sha256(prev.encode() + body).hexdigest()


def _line_start(f: BinaryIO, end: int) -> int:
    """Where the line holding the byte before end begins (just after a newline, or 0)."""
    pos = end
    while pos > 0:
        step = min(TAIL_STEP, pos)
        f.seek(pos - step)
        newline = f.read(step).rfind(b"\n")
        if newline >= 0:
            return pos - step + newline + 1
        pos -= step
    return 0


def _last_hash(path: Path) -> str:
    """The hash of the file's last record, whatever its length (trailing blank lines aside).

    A last line without its newline after a record is a write a crash cut short (never
    acknowledged): it is cut off, unless it is a whole record, which gets its newline. A
    FIFO or a device (log shipping) has no tail to read: its chain starts afresh.
    """
    if not path.exists() or not stat.S_ISREG(path.stat().st_mode):
        return GENESIS
    with path.open("rb") as f:
        size = f.seek(0, os.SEEK_END)
        end = size
        while end > 0 and f.seek(end - 1) >= 0 and f.read(1) == b"\n":
            end -= 1
        if end == 0 and size == 0:
            return GENESIS
        start = _line_start(f, end)
        if end - start > MAX_RECORD_BYTES:
            raise ValueError(f"{path}: the last line is longer than any audit record")
        f.seek(start)
        last = _record_hash(f.read(end - start))
        if end < size:  # the line is complete
            if last is None:
                raise ValueError(f"{path}: the last line is not an audit record")
            return last
        if last is not None:
            with path.open("ab") as repair:
                repair.write(b"\n")
            return last
        before = _line_start(f, start - 1) if start else 0
        f.seek(before)
        previous = _record_hash(f.read(start - before)) if start else None
    if previous is None:
        raise ValueError(f"{path}: ends in a partial line that follows no audit record")
    log.warning("the audit log ended in a partial line; %d bytes cut", end - start)
    with path.open("r+b") as repair:
        repair.truncate(start)
    return previous


def _record_hash(line: bytes) -> str | None:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    digest = record.get("hash") if isinstance(record, dict) else None
    return digest if isinstance(digest, str) else None


def _printable(value: Any) -> Any:
    """value with what JSON cannot hold made writable: lone surrogates (a file name that is
    not UTF-8) escaped, integers past 64 bits and other objects as text."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode()
    if isinstance(value, Mapping):
        return {_printable(str(k)): _printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_printable(v) for v in value]
    if (
        value is None
        or isinstance(value, bool | float)
        or (isinstance(value, int) and -(1 << 63) <= value < (1 << 64))
    ):
        return value
    return _printable(str(value))


class AuditLog:
    """Appends records to a JSONL file from a background task, flushing on close.

    A record is never dropped for a failing disk: lines that could not be written are kept
    and written again every retry_s, and meanwhile `accepting` is False, so admission
    refuses new calls and workers stop leasing (fail closed). Records that still arrive
    (refusals, runs already under way) are kept up to twice the backlog, then counted per
    principal, decision, reason and outcome and written as one summary record for each.
    """

    def __init__(
        self,
        path: Path,
        redactor: Redactor | None = None,
        *,
        backlog: int = MAX_BACKLOG,
        retry_s: float = RETRY_S,
    ) -> None:
        self._path = path
        self._retry_s = retry_s
        self._redact = redactor or Redactor()
        self._backlog = backlog
        self._pending: list[Mapping[str, Any]] = []
        self._folded: Counter[tuple[str, ...]] = Counter()
        # Encoded lines a failed write left behind, and how many records they hold.
        self._unwritten: list[bytes] = []
        self._unwritten_records = 0
        self._writing = 0  # records of the batch being written now
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
            key = tuple(str(entry.get(name, ""))[:MAX_FOLDED_TEXT] for name in _FOLDED_BY)
            if key not in self._folded and len(self._folded) >= MAX_FOLDED_KEYS:
                key = ("*",) * len(_FOLDED_BY)
            self._folded[key] += 1
        self._wake.set()

    async def close(self) -> None:
        """Write everything queued, then stop (giving up, logged, if writes still fail)."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task

    def _backlogged(self) -> int:
        return len(self._pending) + self._writing + self._unwritten_records

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if not self._closing:
                # Gather what arrives meanwhile: one file write (one thread hop) per interval
                # instead of one per call. A clean shutdown still writes everything.
                await asyncio.sleep(FLUSH_INTERVAL_S)
            self._wake.clear()
            # Counts wait while writes fail: each retry would add their lines again.
            summaries = [] if self._failing else self._summaries()
            batch, self._pending = self._pending + summaries, []
            if (batch or self._unwritten) and not await self._write_out(batch):
                if self._closing:
                    lost = self._backlogged() + sum(self._folded.values())
                    log.error("%d audit records lost: the log is not writable", lost)
                    return
                await asyncio.sleep(self._retry_s)
                self._wake.set()
                continue
            if self._folded:
                self._wake.set()  # counts held back while writes failed go out next
            elif self._closing and not self._pending:
                return

    async def _write_out(self, batch: list[Mapping[str, Any]]) -> bool:
        """True once batch and what was left unwritten before are in the file."""
        self._writing = len(batch)
        try:
            await asyncio.to_thread(self._write, batch)
        except Exception as error:  # an OSError above all; anything else is as fatal
            if not self._failing:
                log.error("the audit log is not writable, no calls are taken: %r", error)
            self._failing = True
            return False
        finally:
            self._writing = 0
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
        lines, self._tail = self._encode(batch)
        try:
            self._append(b"".join([*self._unwritten, lines]))
        except BaseException:
            # Kept for the retry, and counted there rather than as being written.
            self._unwritten.append(lines)
            self._writing = 0
            self._unwritten_records += len(batch)
            raise
        self._unwritten, self._unwritten_records = [], 0

    def _encode(self, batch: list[Mapping[str, Any]]) -> tuple[bytes, str]:
        """The lines of batch, chained on from the last record, and the new last hash."""
        lines = []
        prev = self._tail
        for entry in batch:
            body = self._body({**entry, "prev": prev})
            digest = chain_hash(prev, body)
            lines.append(body[:-1] + b',"hash":"' + digest.encode() + b'"}\n')
            prev = digest
        return b"".join(lines), prev

    def _body(self, item: dict[str, Any]) -> bytes:
        """One record as JSON, whatever it holds: a record is never left out of the log."""
        if "args" in item:
            try:
                item["args"] = self._redact(item["args"])
            except Exception:  # never write what might hold an unredacted secret
                log.exception("an audit record's arguments could not be redacted")
                item["args"] = REDACTED
        try:
            return orjson.dumps(item, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            pass
        try:
            return orjson.dumps(_printable(item), option=orjson.OPT_SORT_KEYS)
        except (orjson.JSONEncodeError, RecursionError):  # nested past any JSON writer
            kept = {name: _printable(str(item.get(name, ""))) for name in _ALWAYS_KEPT}
            return orjson.dumps({**kept, "unencodable": True}, option=orjson.OPT_SORT_KEYS)

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
            try:
                os.close(fd)
            except OSError as error:  # written already: writing again would repeat the lines
                log.warning("closing the audit log failed: %s", error)


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
