"""The lexical half of path confinement: roots, ``..``, deny patterns; nothing is opened here."""

from __future__ import annotations

import os
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from clawq_server.errors import InvalidArgument, PolicyDenied
from clawq_server.policy.principal import Principal, Root

NAME_MAX = 255


@dataclass(frozen=True, slots=True)
class Confined:
    """A path checked lexically against a principal's roots; nothing is opened yet.

    ``relative`` holds the normalised components under the root (empty: the root itself);
    ``absolute`` is lexical, for messages and cache keys; ``root_path`` is the resolved root.
    """

    root: Root
    relative: tuple[str, ...]
    absolute: Path
    root_path: Path

    @property
    def name(self) -> str:
        """The final component ("" for the root itself)."""
        return self.relative[-1] if self.relative else ""

    @property
    def display(self) -> str:
        """The path relative to its root, as users wrote it ("." for the root)."""
        return "/".join(self.relative) or "."


def confine(principal: Principal, path: str, *, write: bool = False) -> Confined:
    """Check path against the principal's roots and deny patterns without touching it.

    Raises InvalidArgument for malformed paths and PolicyDenied for paths outside every
    root, matching a deny pattern, or (with write) under a read-only root.
    """
    if "\x00" in path:
        raise InvalidArgument.field("path", "must not contain NUL bytes")
    if not principal.roots:
        raise PolicyDenied(f"principal {principal.name!r} has no allowed roots")
    if path.startswith("/"):
        root, root_path, parts = _absolute(principal, path)
    else:
        root = principal.roots[0]
        root_path = resolve_root(root)
        parts = _normalise(path.split("/"), path)
    if any(len(part.encode("utf-8", "surrogateescape")) > NAME_MAX for part in parts):
        raise InvalidArgument.field("path", f"has a component longer than {NAME_MAX} bytes")
    pattern = denied_by(principal.deny_patterns, parts)
    if pattern is not None:
        raise PolicyDenied(f"path {path!r} matches the deny pattern {pattern!r}")
    if write and not root.writable:
        raise PolicyDenied(f"path {path!r} is under a read-only root")
    return Confined(root, parts, root_path.joinpath(*parts), root_path)


def resolve_root(root: Root) -> Path:
    """The root with its own symlinks resolved (an administrator may configure a symlink)."""
    return Path(os.path.realpath(root.path))


def _normalise(components: list[str], original: str) -> tuple[str, ...]:
    parts: list[str] = []
    for part in components:
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise PolicyDenied(f"path {original!r} climbs above its root")
            parts.pop()
        else:
            parts.append(part)
    return tuple(parts)


def _lexical_absolute(path: str) -> tuple[str, ...]:
    parts: list[str] = []
    for part in path.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return tuple(parts)


def _absolute(principal: Principal, path: str) -> tuple[Root, Path, tuple[str, ...]]:
    """The most specific root containing path, compared component by component."""
    parts = _lexical_absolute(path)
    best: tuple[Root, Path, tuple[str, ...]] | None = None
    best_len = -1
    for root in principal.roots:
        resolved = resolve_root(root)
        for spelling in (resolved.parts[1:], _lexical_absolute(str(root.path))):
            n = len(spelling)
            if n > best_len and parts[:n] == spelling:
                best, best_len = (root, resolved, parts[n:]), n
    if best is None:
        raise PolicyDenied(f"path {path!r} is outside every allowed root")
    return best


def denied_by(patterns: tuple[str, ...], parts: tuple[str, ...]) -> str | None:
    """The first deny pattern matching a component or a run of components, else None.

    A pattern with slashes (".git/config") matches any run of that many components, so it
    holds at every depth; matching ignores case so ".ENV" is as hidden as ".env".
    """
    lowered = [p.lower() for p in parts]
    for pattern in patterns:
        pieces = pattern.lower().strip("/").split("/")
        width = len(pieces)
        for start in range(len(lowered) - width + 1):
            window = lowered[start : start + width]
            if all(fnmatchcase(name, piece) for name, piece in zip(window, pieces, strict=True)):
                return pattern
    return None


def real_path_inside(principal: Principal, path: Path) -> bool:
    """True when path, with every symlink resolved, lies inside one of the principal's roots."""
    real = Path(os.path.realpath(path)).parts
    for root in principal.roots:
        root_parts = resolve_root(root).parts
        if real[: len(root_parts)] == root_parts:
            return True
    return False


def real_confine(principal: Principal, path: Path, *, write: bool = False) -> Confined:
    """confine() applied to path after resolving its symlinks (for command arguments)."""
    return confine(principal, os.path.realpath(path), write=write)
