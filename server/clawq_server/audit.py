"""The tamper-evident audit log: one hash-chained JSON line per call, written off the loop."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

log = logging.getLogger(__name__)
GENESIS = "0" * 64
FLUSH_INTERVAL_S = 0.05
REDACTED = "[REDACTED]"
SECRET_KEYS = re.compile(r"(?i)(token|secret|password|passwd|api[_-]?key|authorization|credential)")
DEFAULT_SECRET_VALUES = (
    r"(?i)bearer\s+\S+",
    r"\b(?:sk|ghp|gho|xox[bap])[-_][A-Za-z0-9_-]{8,}",
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
)


class AuditSink(Protocol):
    """Where audit records go."""

    def record(self, entry: Mapping[str, Any]) -> None:
        """Queue one record; never blocks. The sink may keep entry as it is: hand over a
        mapping nobody changes afterwards."""


class NullAudit:
    """An audit sink that keeps nothing (auditing switched off)."""

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
    """Appends records to a JSONL file from a background task, flushing on close."""

    def __init__(self, path: Path, redactor: Redactor | None = None) -> None:
        self._path = path
        self._redact = redactor or Redactor()
        self._pending: list[Mapping[str, Any]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._prev = GENESIS
        self._closing = False

    async def start(self) -> None:
        """Open the file (continuing its chain) and start the writer."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._prev = await asyncio.to_thread(_last_hash, self._path)
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    def record(self, entry: Mapping[str, Any]) -> None:
        """Queue one record, handed over: the caller keeps no reference to change it by.

        Arguments are redacted by the writer, off the path of the call being answered.
        """
        self._pending.append(entry)
        self._wake.set()

    async def close(self) -> None:
        """Write everything queued, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if not self._closing:
                # Gather what arrives meanwhile: one file write (one thread hop) per interval
                # instead of one per call. A clean shutdown still writes everything.
                await asyncio.sleep(FLUSH_INTERVAL_S)
            self._wake.clear()
            batch, self._pending = self._pending, []
            if batch:
                try:
                    await asyncio.to_thread(self._write, batch)
                except Exception:  # the writer must outlive one bad batch or a full disk
                    log.exception("%d audit records could not be written", len(batch))
            if self._closing and not self._pending:
                return

    def _write(self, batch: list[Mapping[str, Any]]) -> None:
        lines = []
        prev = self._prev
        for entry in batch:
            item = {**entry, "prev": prev}
            if "args" in item:
                item["args"] = self._redact(item["args"])
            body = orjson.dumps(item, option=orjson.OPT_SORT_KEYS)
            digest = chain_hash(prev, body)
            lines.append(body[:-1] + b',"hash":"' + digest.encode() + b'"}\n')
            prev = digest
        with self._path.open("ab") as f:
            f.write(b"".join(lines))
            f.flush()
        self._prev = prev  # only once written: the chain goes on from the file's last line


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
