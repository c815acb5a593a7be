"""What a cached result depends on: the target a call names and the proof it is still true.

A file result rests on the file's (st_dev, st_ino, size, mtime_ns, ctime_ns) and on the names
leading to it; a listing rests on every directory it visited and on every directory it shows
without entering (the size it reports changes with what that directory holds). A walk that
stops at the entry cap says so in the digest. Proofs are taken by walking
from the root through descriptors (never following a symlink, as the tools do), placing a
watch on each directory before reading it, so any change after the walk moves a generation.

Racily clean (as in git): a file whose mtime or ctime lies within RACY_WINDOW_NS of the
moment it was read is never cached, because a second write in the same timestamp tick could
leave the stamp unchanged. Linux stamps files from the coarse clock (one jiffy: 1-10 ms);
the window is twice the slowest tick. Any later write then stamps a ctime past the window.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from clawq_server.cache.keys import entry_key
from clawq_server.cache.watch import Dep, Watcher
from clawq_server.errors import ClawqError
from clawq_server.policy import paths
from clawq_server.policy.principal import Principal
from clawq_server.tools.files_base import cap

RACY_WINDOW_NS = 20_000_000
Stamp = tuple[int, int, int, int, int]


class Kind(StrEnum):
    """How a tool's results depend on the world."""

    FILE = "file"  # read_file: one file and the names leading to it
    TREE = "tree"  # list_directory: every directory visited
    OPAQUE = "opaque"  # other cacheable tools: valid for their TTL only


@dataclass(frozen=True, slots=True)
class Target:
    """A call's cache identity: its key, what it reads, and the walk that reads it."""

    tool: str
    kind: Kind
    key: str
    path: str = ""  # absolute (lexical) path, for invalidation
    confined: paths.Confined | None = None
    max_depth: int = 1
    max_entries: int = 0
    patterns: tuple[str, ...] = ()


@dataclass(slots=True)
class Proof:
    """Why a result is still true: watched generations, the file stamp, the listing digest."""

    root_id: tuple[int, int]
    deps: tuple[Dep, ...] = ()
    versions: tuple[int, ...] = ()
    seen: int = -1  # watcher event count when versions were last confirmed
    stamp: Stamp | None = None
    digest: str = ""
    started_ns: int = field(default_factory=time.time_ns)


def plan(tool: str, args: Mapping[str, Any], args_json: bytes, principal: Principal) -> Target:
    """The target of a validated call. Raises the policy error the tool itself would raise."""
    if tool == "read_file":
        confined = paths.confine(principal, str(args["path"]))
        where = str(confined.absolute)
        scope = _scope(confined, where, f"read:{principal.limits.max_read_bytes}")
        key = entry_key(tool, args_json, scope)
        return Target(tool, Kind.FILE, key, where, confined)
    if tool == "list_directory":
        confined = paths.confine(principal, str(args.get("path", "")))
        limits = principal.limits
        depth_cap = min(limits.max_list_depth, paths.MAX_TREE_DEPTH)
        depth = cap(int(args.get("max_depth", 0)), depth_cap) if args.get("recursive") else 1
        entries = cap(int(args.get("max_entries", 0)), limits.max_list_entries)
        patterns = principal.deny_patterns
        where = str(confined.absolute)
        scope = _scope(confined, where, f"list:{depth}:{entries}:{patterns!r}")
        key = entry_key(tool, args_json, scope)
        return Target(tool, Kind.TREE, key, where, confined, depth, entries, patterns)
    return Target(tool, Kind.OPAQUE, entry_key(tool, args_json, f"principal:{principal!r}"))


def _scope(confined: paths.Confined, where: str, policy: str) -> str:
    return f"{confined.root_path}\0{where}\0{policy}"


def file_stamp(st: os.stat_result) -> Stamp:
    """The identity and version of a file as stat sees it."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def racy(stamp: Stamp, started_ns: int) -> bool:
    """True when the file changed too close to started_ns for its stamp to prove anything."""
    return max(stamp[3], stamp[4]) >= started_ns - RACY_WINDOW_NS


def root_id(root_path: str) -> tuple[int, int]:
    """The (st_dev, st_ino) of a root directory; a root replaced at its path differs."""
    st = os.stat(root_path)
    return st.st_dev, st.st_ino


def prove(target: Target, watcher: Watcher | None) -> Proof | None:
    """Watch and fingerprint what target depends on; None when it cannot be proven.

    Blocking: run it in a thread. Holds watch references in proof.deps; the caller
    releases them through the watcher when the proof is dropped.
    """
    if target.confined is None:
        return Proof(root_id=(0, 0))
    walk = _Walk(target, watcher)
    try:
        proof = walk.run(target.confined)
    except (OSError, ClawqError):
        proof = None
    if proof is None and watcher is not None:
        watcher.release(walk.deps)
    return proof


@dataclass
class _Walk:
    """One proving walk: the descriptors it opens and the watches it takes."""

    target: Target
    watcher: Watcher | None
    deps: list[Dep] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)
    count: int = 0

    def run(self, confined: paths.Confined) -> Proof | None:
        started = time.time_ns()
        seen, epoch = self.watcher.mark() if self.watcher is not None else (-1, 0)
        self.versions.append(epoch)
        fd = paths.open_root(confined)
        try:
            ident = os.fstat(fd)
            leaf = confined.relative[-1:] if self.target.kind is Kind.FILE else ()
            for name in confined.relative[: len(confined.relative) - len(leaf)]:
                self._watch(fd, name)
                child = os.open(name, paths.DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = child
            proof = Proof(root_id=(ident.st_dev, ident.st_ino), seen=seen, started_ns=started)
            if self.target.kind is Kind.FILE:
                return self._file(fd, leaf[0], proof)
            return self._tree(fd, confined.relative, proof)
        finally:
            os.close(fd)

    def _watch(self, fd: int, name: str | None) -> None:
        """Watch a directory before reading it, keeping the version it had then."""
        if self.watcher is not None:
            dep, version = self.watcher.watch(fd, name)
            self.deps.append(dep)
            self.versions.append(version)

    def _file(self, parent: int, name: str, proof: Proof) -> Proof | None:
        self._watch(parent, name)
        self._keep(proof)
        st = paths.lstat_at(parent, name)
        if st is None or not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
            return None  # the tool fails on it: failures are not cached
        proof.stamp = file_stamp(st)
        return None if racy(proof.stamp, proof.started_ns) else proof

    def _tree(self, fd: int, rel: tuple[str, ...], proof: Proof) -> Proof | None:
        digest = hashlib.blake2b(digest_size=20)
        self._watch(fd, None)
        ok = self._scan(fd, rel, 1, digest)
        self._keep(proof)
        if not ok:
            return None
        proof.digest = digest.hexdigest()
        return proof

    def _keep(self, proof: Proof) -> None:
        proof.deps = tuple(self.deps)
        proof.versions = tuple(self.versions)

    def _scan(self, fd: int, rel: tuple[str, ...], depth: int, digest: Any) -> bool:
        """Mirror the listing's walk (name order, deny patterns, caps); False: not cacheable."""
        with os.scandir(fd) as it:
            names = sorted(e.name for e in it)
        for name in names:
            child = (*rel, name)
            if paths.denied_by(self.target.patterns, child) is not None:
                continue
            if self.count >= self.target.max_entries:
                digest.update(b"\0+")  # the listing stops here too: it is truncated
                return True
            st = paths.lstat_at(fd, name)
            if st is None:
                continue
            is_dir = stat.S_ISDIR(st.st_mode)
            if st.st_nlink > 1 and not is_dir:
                return False  # changes through another link reach no watched directory
            if is_dir and depth >= self.target.max_depth and self.watcher is not None:
                st = self._edge(fd, name)  # listed, not entered: its size is in the listing
            self.count += 1
            digest.update(
                os.fsencode("/".join(child)) + b"\0%o\0%d\0" % (st.st_mode >> 12, st.st_size)
            )
            if (
                is_dir
                and depth < self.target.max_depth
                and not self._descend(fd, name, child, depth, digest)
            ):
                return False
        return True

    def _edge(self, fd: int, name: str) -> os.stat_result:
        """A directory the listing shows but does not enter, watched and then stat'ed: what
        is created in or removed from it changes the size the listing reports."""
        sub = os.open(name, paths.DIR_FLAGS, dir_fd=fd)
        try:
            self._watch(sub, None)
            return os.fstat(sub)
        finally:
            os.close(sub)

    def _descend(self, fd: int, name: str, child: tuple[str, ...], depth: int, digest: Any) -> bool:
        try:
            sub = os.open(name, paths.DIR_FLAGS, dir_fd=fd)
        except (FileNotFoundError, NotADirectoryError):
            return False  # changed under the walk
        try:
            self._watch(sub, None)
            return self._scan(sub, child, depth + 1, digest)
        finally:
            os.close(sub)


__all__ = [
    "RACY_WINDOW_NS",
    "Kind",
    "Proof",
    "Target",
    "file_stamp",
    "plan",
    "prove",
    "racy",
    "root_id",
]
