"""The read-only file tools: read_file and list_directory."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from typing import Any, ClassVar

from clawq_server.model import JsonObject, SideEffect, ToolResult
from clawq_server.policy import paths
from clawq_server.policy.principal import Principal
from clawq_server.tools.files_base import (
    INT32_MAX,
    INT64_MAX,
    FileTool,
    cap,
    count_property,
    flag_property,
    path_property,
)

_CHUNK = 1 << 20


class ReadFileTool(FileTool):
    """Reads a byte range of a regular file inside the principal's roots."""

    name = "read_file"
    description = (
        "Read a file inside an allowed root: bytes from offset, at most limit of them "
        "(0: the policy cap); truncated is set when the file continues past what was returned."
    )
    side_effect = SideEffect.READ_ONLY
    cacheable = True
    schema: ClassVar[JsonObject] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["path"],
        "properties": {
            "path": path_property("File path relative to an allowed root, or absolute inside one."),
            "offset": count_property("Byte offset to start reading at.", INT64_MAX),
            "limit": count_property("Most bytes to return; 0 means the policy cap.", INT64_MAX),
        },
    }

    def run_sync(self, principal: Principal, args: dict[str, Any]) -> ToolResult:
        """Read the range; the payload carries the file's total size and the offset."""
        confined = paths.confine(principal, args["path"])
        offset = int(args["offset"])
        want = cap(int(args["limit"]), principal.limits.max_read_bytes)
        fd = paths.open_file(confined, os.O_RDONLY)
        try:
            data = _pread(fd, want, offset)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        return ToolResult(
            output=data,
            truncated=offset + len(data) < size,
            payload={"size": size, "offset": offset},
        )


def _pread(fd: int, want: int, offset: int) -> bytes:
    chunks: list[bytes] = []
    got = 0
    while got < want:
        chunk = os.pread(fd, min(_CHUNK, want - got), offset + got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    return "other"


def _scan(fd: int) -> list[tuple[str, os.stat_result]]:
    """The entries of an open directory in name order, skipping any removed mid-scan."""
    found: list[tuple[str, os.stat_result]] = []
    with os.scandir(fd) as it:
        for entry in it:
            try:
                found.append((entry.name, entry.stat(follow_symlinks=False)))
            except FileNotFoundError:
                continue
    found.sort(key=lambda item: item[0])
    return found


def _printable(path: str) -> str:
    """Names that are not UTF-8 shown with replacement characters (results are JSON)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


@dataclass
class _Listing:
    """One walk's state: the caps and what was gathered so far."""

    patterns: tuple[str, ...]
    max_depth: int
    max_entries: int
    entries: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False

    def walk(self, fd: int, rel: tuple[str, ...], depth: int) -> None:
        """Record the entries of the open directory fd, descending depth-first in name order."""
        for name, st in _scan(fd):
            child = (*rel, name)
            if paths.denied_by(self.patterns, child) is not None:
                continue
            if len(self.entries) >= self.max_entries:
                self.truncated = True
                return
            kind = _kind(st.st_mode)
            shown = _printable("/".join(child))
            self.entries.append({"path": shown, "type": kind, "size": st.st_size})
            if kind == "dir" and depth < self.max_depth:
                self._descend(fd, name, child, depth)
            if self.truncated:
                return

    def _descend(self, fd: int, name: str, child: tuple[str, ...], depth: int) -> None:
        try:
            sub = os.open(name, paths.DIR_FLAGS, dir_fd=fd)
        except (FileNotFoundError, NotADirectoryError):
            return  # removed or swapped for a link since the scan: nothing to follow
        try:
            self.walk(sub, child, depth + 1)
        finally:
            os.close(sub)


class ListDirectoryTool(FileTool):
    """Lists a directory inside the principal's roots, optionally recursively."""

    name = "list_directory"
    description = (
        "List a directory inside an allowed root (empty path: the root). Entries carry a path "
        "relative to the root, a type (file, dir, symlink, other) and a size; symlinks are "
        "reported, never followed, and entries matching deny patterns are left out."
    )
    side_effect = SideEffect.READ_ONLY
    cacheable = True
    schema: ClassVar[JsonObject] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "path": path_property("Directory relative to an allowed root.", required=False),
            "recursive": flag_property("Descend into subdirectories."),
            "max_depth": count_property("Deepest level when recursive; 0: policy cap.", INT32_MAX),
            "max_entries": count_property("Most entries to return; 0: policy cap.", INT32_MAX),
        },
    }

    def run_sync(self, principal: Principal, args: dict[str, Any]) -> ToolResult:
        """Walk the directory; output is one path a line, the payload holds the entries."""
        confined = paths.confine(principal, args["path"])
        limits = principal.limits
        depth_cap = min(limits.max_list_depth, paths.MAX_TREE_DEPTH)
        listing = _Listing(
            patterns=principal.deny_patterns,
            max_depth=cap(int(args["max_depth"]), depth_cap) if args["recursive"] else 1,
            max_entries=cap(int(args["max_entries"]), limits.max_list_entries),
        )
        fd = paths.open_dir(confined)
        try:
            listing.walk(fd, confined.relative, 1)
        finally:
            os.close(fd)
        lines = "".join(entry["path"] + "\n" for entry in listing.entries)
        return ToolResult(
            output=lines.encode(),
            truncated=listing.truncated,
            payload={"entries": listing.entries, "truncated": listing.truncated},
        )
