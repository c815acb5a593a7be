"""Cache keys: the digest naming one cached result, and the Redis key layout of the cache."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


def entry_key(tool: str, args_json: bytes, scope: str) -> str:
    """The name of a result: tool, canonical argument JSON and the scope it was computed in.

    scope holds what the result depends on beyond the arguments (the resolved root and
    absolute path, the policy limits that shape it), so two principals whose roots differ
    never share an entry. Each part is length-prefixed, so no split of the parts collides.
    """
    h = hashlib.blake2b(digest_size=20)
    for part in (tool.encode(), args_json, scope.encode("utf-8", "surrogateescape")):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class CacheKeys:
    """Names of the cache's Redis keys, all under ``{prefix:cache}`` (one cluster hash tag)."""

    prefix: str = "clawq"

    @property
    def base(self) -> str:
        """The hash-tagged stem every cache key starts with."""
        return f"{{{self.prefix}:cache}}"

    def entry(self, key: str) -> str:
        """The string holding one encoded result."""
        return f"{self.base}:e:{key}"

    @property
    def index(self) -> str:
        """The hash of every entry: key -> JSON [tool, bytes, path, expires_at]."""
        return f"{self.base}:index"

    def path(self, path: str) -> str:
        """The set of entry keys that depend on an absolute path."""
        return f"{self.base}:p:{path}"

    @property
    def stats(self) -> str:
        """The hash of counters: "<tool>:hits", "<tool>:misses"."""
        return f"{self.base}:stats"
