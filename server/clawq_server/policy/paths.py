"""Confined paths: the lexical rules (path_rules), then descriptor walks beneath a root.

Python 3.11's ``os`` has no ``openat2``, so ``RESOLVE_BENEATH`` is out of reach without a raw
syscall. The walk below gives the same guarantee: ``..`` is resolved lexically before anything
is opened and never reaches the kernel, and every component under the root is opened with
``O_NOFOLLOW`` relative to its parent's descriptor. No symlink under a root is ever followed, so
a directory swapped for a symlink between a check and an open makes the open fail, not escape.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator

from clawq_server.errors import ClawqError, InvalidArgument, PolicyDenied, ToolFailure
from clawq_server.policy.path_rules import (
    Confined,
    check_path,
    check_root,
    confine,
    denied_by,
    real_confine,
    real_path_inside,
    resolve_root,
)

__all__ = [
    "DIR_FLAGS",
    "MAX_TREE_DEPTH",
    "Confined",
    "check_path",
    "check_regular",
    "confine",
    "denied_by",
    "failure",
    "is_a_directory",
    "lstat_at",
    "not_found",
    "open_at",
    "open_dir",
    "open_file",
    "open_parent",
    "open_root",
    "real_confine",
    "real_path_inside",
    "resolve_root",
    "stat_confined",
    "walk_tree",
]

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO must never wait for a peer; it is refused after fstat anyway.
_FILE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
MAX_TREE_DEPTH = 256  # deeper trees are refused rather than risking recursion and fd limits


def open_root(confined: Confined) -> int:
    """A directory descriptor of the confined path's root. Caller closes it."""
    try:
        fd = os.open(confined.root_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as error:
        raise ToolFailure(
            "FAILED_PRECONDITION", "ROOT_UNAVAILABLE", f"root {confined.root.path} cannot be opened"
        ) from error
    try:
        check_root(confined.root, os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_parent(confined: Confined, *, create: bool = False) -> int:
    """A descriptor of the final component's parent, walked from the root without symlinks.

    With create, missing directories are made on the way. Caller closes the descriptor.
    """
    fd = open_root(confined)
    try:
        for name in confined.relative[:-1]:
            child = _open_child_dir(fd, name, confined, create)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_child_dir(fd: int, name: str, confined: Confined, create: bool) -> int:
    try:
        return os.open(name, DIR_FLAGS, dir_fd=fd)
    except OSError as error:
        if not (create and isinstance(error, FileNotFoundError)):
            raise failure(error, fd, name, confined) from None
    try:
        os.mkdir(name, 0o755, dir_fd=fd)
    except FileExistsError:
        pass  # made by someone else meanwhile; the open below checks what it is
    except OSError as error:
        raise failure(error, fd, name, confined) from None
    try:
        return os.open(name, DIR_FLAGS, dir_fd=fd)
    except OSError as error:
        raise failure(error, fd, name, confined) from None


def open_dir(confined: Confined) -> int:
    """A descriptor of the confined directory (the root itself when relative is empty)."""
    if not confined.relative:
        return open_root(confined)
    parent = open_parent(confined)
    try:
        return os.open(confined.name, DIR_FLAGS, dir_fd=parent)
    except OSError as error:
        raise failure(error, parent, confined.name, confined) from None
    finally:
        os.close(parent)


def open_file(confined: Confined, flags: int, mode: int = 0o644) -> int:
    """A descriptor of the confined regular file (see open_at). Caller closes it."""
    if not confined.relative:
        raise is_a_directory(confined)
    parent = open_parent(confined)
    try:
        return open_at(parent, confined, flags, mode)
    finally:
        os.close(parent)


def open_at(parent: int, confined: Confined, flags: int, mode: int = 0o644) -> int:
    """Open the final component under parent: never a symlink, FIFO, device or hard link.

    Devices are refused before the open (opening one can have effects); the fstat after
    the open catches anything swapped in between.
    """
    name = confined.name
    before = lstat_at(parent, name)
    if before is not None:
        check_regular(before, confined)
    try:
        fd = os.open(name, flags | _FILE_FLAGS, mode, dir_fd=parent)
    except OSError as error:
        raise failure(error, parent, name, confined) from None
    try:
        check_regular(os.fstat(fd), confined)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_regular(st: os.stat_result, confined: Confined) -> None:
    """Refuse anything but a regular file with a single link (directories get a ToolFailure)."""
    if stat.S_ISDIR(st.st_mode):
        raise is_a_directory(confined)
    if stat.S_ISLNK(st.st_mode):
        raise PolicyDenied(f"{confined.display} is a symbolic link; links are not followed")
    if not stat.S_ISREG(st.st_mode):
        raise PolicyDenied(f"{confined.display} is not a regular file")
    if st.st_nlink > 1:
        # A hard link may share its inode with a file outside every root.
        raise PolicyDenied(f"{confined.display} has other hard links")


def lstat_at(parent: int, name: str) -> os.stat_result | None:
    """The entry's own status under parent (links not followed), or None when it is missing."""
    try:
        return os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return None


def stat_confined(confined: Confined) -> os.stat_result:
    """The confined entry's own status, reached by the descriptor walk (for cache fingerprints)."""
    if not confined.relative:
        fd = open_root(confined)
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)
    parent = open_parent(confined)
    try:
        st = lstat_at(parent, confined.name)
    finally:
        os.close(parent)
    if st is None:
        raise not_found(confined)
    return st


def walk_tree(
    parent: int, name: str, rel: tuple[str, ...], depth: int = 0
) -> Iterator[tuple[int, str, tuple[str, ...], bool]]:
    """Every entry under parent/name, children before their directory, symlinks never followed.

    Yields (directory descriptor, entry name, components under the root, is a directory); the
    descriptor stays open until the generator moves on.
    """
    if depth > MAX_TREE_DEPTH:
        raise ToolFailure("FAILED_PRECONDITION", "TREE_TOO_DEEP", f"{'/'.join(rel)} is too deep")
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=parent)
    except NotADirectoryError:
        yield parent, name, rel, False  # replaced by a file or symlink meanwhile: a leaf now
        return
    try:
        with os.scandir(fd) as it:
            children = sorted((e.name, e.is_dir(follow_symlinks=False)) for e in it)
        for child, is_dir in children:
            if is_dir:
                yield from walk_tree(fd, child, (*rel, child), depth + 1)
            else:
                yield fd, child, (*rel, child), False
    finally:
        os.close(fd)
    yield parent, name, rel, True


def not_found(confined: Confined) -> ToolFailure:
    """The failure for a missing path."""
    return ToolFailure("NOT_FOUND", "FILE_NOT_FOUND", f"{confined.display} does not exist")


def is_a_directory(confined: Confined) -> ToolFailure:
    """The failure for a file operation on a directory."""
    return ToolFailure(
        "FAILED_PRECONDITION", "IS_A_DIRECTORY", f"{confined.display} is a directory"
    )


_ERRNO_FAILURES = {
    errno.EACCES: ("PERMISSION_DENIED", "FILE_ACCESS_DENIED"),
    errno.EPERM: ("PERMISSION_DENIED", "FILE_ACCESS_DENIED"),
    errno.ENOSPC: ("RESOURCE_EXHAUSTED", "NO_SPACE"),
    errno.EDQUOT: ("RESOURCE_EXHAUSTED", "NO_SPACE"),
    errno.EROFS: ("FAILED_PRECONDITION", "READ_ONLY_FILESYSTEM"),
    errno.ENOTEMPTY: ("FAILED_PRECONDITION", "DIRECTORY_NOT_EMPTY"),
    errno.EEXIST: ("ALREADY_EXISTS", "FILE_EXISTS"),
    errno.ENOTDIR: ("FAILED_PRECONDITION", "NOT_A_DIRECTORY"),
    errno.EISDIR: ("FAILED_PRECONDITION", "IS_A_DIRECTORY"),
}


def failure(error: OSError, parent: int, name: str, confined: Confined) -> ClawqError:
    """Translate an OSError on parent/name, looking at what the entry really is."""
    if error.errno == errno.ENOENT:
        return not_found(confined)
    if error.errno == errno.ENAMETOOLONG:
        return InvalidArgument.field("path", "is too long")
    denied = _denied_entry(parent, name, confined)
    if denied is not None:
        return denied
    if error.errno == errno.ELOOP:
        return PolicyDenied(f"{confined.display} crosses a symbolic link; links are not followed")
    code, reason = _ERRNO_FAILURES.get(error.errno or 0, ("INTERNAL", "FILE_IO_ERROR"))
    return ToolFailure(code, reason, f"{confined.display}: {error.strerror}")


def _denied_entry(parent: int, name: str, confined: Confined) -> PolicyDenied | None:
    """PolicyDenied when the entry that made the call fail is a symlink, FIFO or device."""
    try:
        st = lstat_at(parent, name)
    except OSError:
        return None
    if st is None or stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
        return None
    if stat.S_ISLNK(st.st_mode):
        return PolicyDenied(f"{confined.display} crosses a symbolic link; links are not followed")
    return PolicyDenied(f"{confined.display} crosses something that is not a regular file")
