"""`clawq submit-file`: stream a JSON-lines file of calls, with a progress bar on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from clawq import cli_render as render
from clawq.sync import Client
from clawq.types import Ack, Call

_OPTIONS = ("idempotency_key", "priority", "delay", "max_attempts", "idempotent")
_SHOWN_ERRORS = 20
_KEPT_ERRORS = 100


@dataclass
class _Tally:
    """What happened to the lines of the file."""

    accepted: int = 0
    existing: int = 0
    rejected: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    #: Line number of each call handed to the stream, by its index.
    lines: list[int] = field(default_factory=list)

    def reject(self, line: int, error: dict[str, Any]) -> None:
        self.rejected += 1
        if len(self.errors) < _KEPT_ERRORS:
            self.errors.append({"line": line, **error})

    def count(self, ack: Ack) -> None:
        if ack.error is not None:
            self.reject(self.lines[ack.index], render.error_json(ack.error))
        else:
            self.accepted += 1
            self.existing += ack.existing


def parse_line(line: str | bytes) -> Call:
    """One call from ``{"tool": ..., "args": {...}, "idempotency_key": ...}``; ValueError if bad
    (also for bytes that are not UTF-8)."""
    obj = json.loads(line)
    if not isinstance(obj, dict) or not isinstance(obj.get("tool"), str):
        raise ValueError('expected an object with a "tool" string')
    args = obj.pop("args", {})
    if not isinstance(args, dict):
        raise ValueError('"args" must be an object')
    tool = obj.pop("tool")
    unknown = set(obj) - set(_OPTIONS)
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}; options are {list(_OPTIONS)}")
    return Call.of(tool, args, **obj)


def _calls(path: Path, tally: _Tally) -> Iterator[Call]:
    # Binary: a line that is not UTF-8 is rejected on its own, not the whole file.
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                call = parse_line(line)
            except (ValueError, TypeError) as exc:
                tally.reject(number, {"code": "INVALID_ARGUMENT", "message": str(exc)})
                continue
            tally.lines.append(number)
            yield call


def _count_lines(path: Path) -> int:
    with path.open("rb") as lines:
        return sum(1 for line in lines if line.strip())


def submit_file(client: Client, path: Path, *, batch_size: int, as_json: bool) -> int:
    """Stream every call of the file; print the counts; 1 when any call was rejected."""
    tally = _Tally()
    total = _count_lines(path)
    acks = client.submit_many(_calls(path, tally), batch_size=batch_size)
    console = Console(stderr=True)
    with Progress(console=console, disable=as_json or not console.is_terminal) as progress:
        bar = progress.add_task("submitting", total=total)
        for ack in acks:
            tally.count(ack)
            progress.update(bar, completed=tally.accepted + tally.rejected)
    _report(tally, as_json)
    return 1 if tally.rejected else 0


def _report(tally: _Tally, as_json: bool) -> None:
    if as_json:
        render.print_json(
            {
                "accepted": tally.accepted,
                "existing": tally.existing,
                "rejected": tally.rejected,
                "errors": tally.errors,
            }
        )
        return
    errors = sorted(tally.errors, key=lambda e: int(e["line"]))
    for error in errors[:_SHOWN_ERRORS]:
        reason = f" ({error['reason']})" if error.get("reason") else ""
        message = render.one_line(str(error["message"]))
        print(f"line {error['line']}: {error['code']}{reason}: {message}", file=sys.stderr)
    if tally.rejected > _SHOWN_ERRORS:
        print(f"... and {tally.rejected - _SHOWN_ERRORS} more rejected", file=sys.stderr)
    print(f"accepted {tally.accepted} ({tally.existing} existing), rejected {tally.rejected}")
