"""A principal and everything policy allows it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Root:
    """A directory a principal may use; read-only roots refuse writes and deletes.

    identity is the directory's (device, inode) when the configuration was loaded: a root
    whose path later leads elsewhere (a parent renamed and a symlink left in its place,
    which a writable root around a read-only one allows) is refused rather than followed.
    """

    path: Path
    writable: bool = True
    identity: tuple[int, int] | None = None

    @classmethod
    def at(cls, path: Path, writable: bool = True) -> Root:
        """The root at path as it is now (no identity while it does not exist)."""
        try:
            found = os.stat(path)
        except OSError:
            return cls(path, writable)
        return cls(path, writable, (found.st_dev, found.st_ino))


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits of a principal's commands and Python runs, and of file tools."""

    timeout_s: float = 30.0
    max_timeout_s: float = 300.0
    idle_timeout_s: float = 10.0
    cpu_s: int = 30
    memory_bytes: int = 1 << 30
    processes: int = 64
    file_size_bytes: int = 64 << 20
    open_files: int = 256
    max_output_bytes: int = 1 << 20
    max_stdin_bytes: int = 1 << 20
    max_read_bytes: int = 8 << 20
    max_write_bytes: int = 16 << 20
    max_list_entries: int = 10_000
    max_list_depth: int = 32


DEFAULT_DENY_PATTERNS = (".ssh", ".env", ".git/config", "*.pem", "*.key")

# Not git or tar: git runs commands a repository's configuration names (filters, fetch
# helpers and more), and tar writes any file or symlink an archive holds, so a principal
# that can write to its roots could run code through either. A principal may still be
# given them (their argument rules apply), where its roots are read-only or the sandbox
# contains what they do.
DEFAULT_COMMANDS = (
    "ls",
    "cat",
    "head",
    "tail",
    "wc",
    "grep",
    "find",
    "sort",
    "diff",
    "echo",
    "true",
    "false",
    "uniq",
    "cut",
    "tr",
    "stat",
    "file",
    "du",
)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling and what they may do."""

    name: str
    roots: tuple[Root, ...]
    tools: frozenset[str] | None = None  # None: every registered tool
    commands: tuple[str, ...] = DEFAULT_COMMANDS
    env_allow: frozenset[str] = frozenset()
    deny_patterns: tuple[str, ...] = DEFAULT_DENY_PATTERNS
    python_enabled: bool = False
    python_imports: frozenset[str] = frozenset(
        {
            "math",
            "json",
            "re",
            "itertools",
            "functools",
            "collections",
            "datetime",
            "statistics",
            "string",
            "random",
            "decimal",
            "fractions",
            "textwrap",
            "heapq",
            "bisect",
            "operator",
            "typing",
            "dataclasses",
            "enum",
            "time",
        }
    )
    allow_recursive_delete: bool = False
    limits: Limits = field(default_factory=Limits)
    rate_per_s: float = 0.0  # 0: unlimited
    burst: int = 0
    max_queued: int = 0  # 0: unlimited
    worker: bool = False  # may lease and complete tasks through WorkerService
    admin: bool = False  # may see every principal's dead letters, the queue and the cache

    def may_use(self, tool: str) -> bool:
        """True when the tool is on this principal's list (or there is no list)."""
        return self.tools is None or tool in self.tools
