"""A stored result: output and stderr as they are, the rest as one JSON document.

Both backends keep a result this way (SQLite columns, Redis record fields), so what a
record holds is decided here once.
"""

from __future__ import annotations

import orjson

from clawq_server.memo import IdentityMemo
from clawq_server.model import ToolResult

# Every answer from the cache is stored as a task of its own, and the in-process cache
# answers with its entry's very result: its payload's JSON (a listing's can be megabytes)
# is encoded once per entry.
_CACHED_PAYLOADS: IdentityMemo[orjson.Fragment] = IdentityMemo(256)


def encode_meta(result: ToolResult) -> bytes:
    """Everything of result but its output and stderr, as JSON."""
    payload: object = result.payload
    if result.cached and payload is not None:
        shared = payload
        payload = _CACHED_PAYLOADS.get(result, lambda: orjson.Fragment(orjson.dumps(shared)))
    return orjson.dumps(
        {
            "truncated": result.truncated,
            "stderr_truncated": result.stderr_truncated,
            "exit_code": result.exit_code,
            "signal": result.signal,
            "payload": payload,
            "cached": result.cached,
        }
    )


def decode_result(
    output: bytes | None, stderr: bytes | None, meta_json: bytes | None
) -> ToolResult | None:
    """The stored result, or None for a task without one (no metadata)."""
    if meta_json is None:
        return None
    meta = orjson.loads(meta_json)
    return ToolResult(
        output=output or b"",
        truncated=meta["truncated"],
        stderr=stderr or b"",
        stderr_truncated=meta["stderr_truncated"],
        exit_code=meta["exit_code"],
        signal=meta["signal"],
        payload=meta["payload"],
        cached=meta["cached"],
    )
