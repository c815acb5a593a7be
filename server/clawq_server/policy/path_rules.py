"""The lexical half of path confinement: roots, ``..``, deny patterns; nothing is opened here."""

from __future__ import annotations

import fnmatch
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

from clawq_server.errors import FieldViolation, InvalidArgument, PolicyDenied, ToolFailure
from clawq_server.policy.principal import Principal, Root

NAME_MAX = 255


@dataclass(frozen=True, slots=True)
class Confined:
    """A path checked lexically against a principal's roots; nothing is opened yet.

    ``relative`` holds the normalised components under the root (empty: the root itself);
    ``absolute`` is lexical, for messages and cache keys; ``root_path`` is the root as
    configured, made absolute (its own symlinks are the administrator's and are followed).
    """

    root: Root
    relative: tuple[str, ...]
    root_path: Path

    @property
    def absolute(self) -> Path:
        """The lexical absolute path (built on demand: admission never needs it)."""
        return self.root_path.joinpath(*self.relative)

    @property
    def name(self) -> str:
        """The final component ("" for the root itself)."""
        return self.relative[-1] if self.relative else ""

    @property
    def display(self) -> str:
        """The path relative to its root, as users wrote it ("." for the root)."""
        return "/".join(self.relative) or "."


def confine(
    principal: Principal, path: str, *, write: bool = False, field: str = "path"
) -> Confined:
    """Check path against the principal's roots and deny patterns without touching it.

    Relative paths start at the first root; absolute ones must lie in some root. Either way
    the most specific (innermost) root containing the path decides, so a read-only root
    nested in a writable one keeps its files. Raises InvalidArgument for malformed paths and
    PolicyDenied for paths outside every root, matching a deny pattern, or (with write)
    under a read-only root; either names field.
    """
    root, parts = _checked(principal, path, write, field)
    root_path = root.path if root.path.is_absolute() else Path(os.path.abspath(root.path))
    return Confined(root, parts, root_path)


def check_path(
    principal: Principal, path: str, *, write: bool = False, field: str = "path"
) -> None:
    """confine()'s verdict alone, for admission, which needs no Confined to work on; a
    malformed path is an InvalidArgument naming field."""
    _checked(principal, path, write, field)


def _checked(
    principal: Principal, path: str, write: bool, field: str = "path"
) -> tuple[Root, tuple[str, ...]]:
    """The root deciding path and the normalised parts under it, or the refusal raised."""
    if "\x00" in path:
        raise InvalidArgument.field(field, "must not contain NUL bytes")
    if not principal.roots:
        raise PolicyDenied(f"principal {principal.name!r} has no allowed roots")
    if path.startswith("/"):
        found = _innermost(principal, _lexical_absolute(path), resolve=True)
        if found is None:
            raise _denied(field, path, "is outside every allowed root")
        root, parts = found
    else:
        root, parts = principal.roots[0], _normalise(path.split("/"), path, field)
        if len(principal.roots) > 1:
            whole = _root_parts(root) + parts
            root, parts = _innermost(principal, whole, resolve=False) or (root, parts)
    # A character encodes to at most 4 bytes: only a long path needs its parts encoded (the
    # parts are pieces of path, so a short path has no long part).
    if len(path) > NAME_MAX // 4 and any(_byte_length(part, field) > NAME_MAX for part in parts):
        raise InvalidArgument.field(field, f"has a component longer than {NAME_MAX} bytes")
    pattern = denied_by(principal.deny_patterns, parts)
    if pattern is not None:
        raise _denied(field, path, f"matches the deny pattern {pattern!r}")
    if write and not root.writable:
        raise _denied(field, path, "is under a read-only root")
    return root, parts


def _denied(field: str, path: str, why: str) -> PolicyDenied:
    return PolicyDenied(f"path {path!r} {why}", [FieldViolation(field, why)])


def _byte_length(part: str, field: str) -> int:
    try:
        return len(part.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:  # a lone surrogate no file name can hold
        raise InvalidArgument.field(field, "is not valid UTF-8") from None


def check_root(root: Root, found: os.stat_result) -> None:
    """Refuse a root whose path no longer leads to the directory configured (see Root)."""
    if root.identity is not None and (found.st_dev, found.st_ino) != root.identity:
        raise ToolFailure(
            "FAILED_PRECONDITION",
            "ROOT_MOVED",
            f"root {root.path} is no longer the directory it was configured as",
        )


def resolve_root(root: Root) -> Path:
    """The root with its own symlinks resolved (an administrator may configure a symlink)."""
    return Path(os.path.realpath(root.path))


def _root_parts(root: Root) -> tuple[str, ...]:
    path = root.path if root.path.is_absolute() else Path(os.path.abspath(root.path))
    return _lexical_absolute(str(path))


def _normalise(components: list[str], original: str, field: str) -> tuple[str, ...]:
    parts: list[str] = []
    for part in components:
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise _denied(field, original, "climbs above its root")
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


def _innermost(
    principal: Principal, parts: tuple[str, ...], *, resolve: bool
) -> tuple[Root, tuple[str, ...]] | None:
    """The innermost root containing the absolute components, compared component-wise.

    With resolve, each root is matched both as configured and with its symlinks resolved,
    so either spelling of an absolute path works (a syscall per root: absolute paths only).
    """
    best: tuple[Root, tuple[str, ...]] | None = None
    best_len = -1
    for root in principal.roots:
        spellings = [_root_parts(root)]
        if resolve:
            spellings.append(resolve_root(root).parts[1:])
        for spelling in spellings:
            n = len(spelling)
            if n > best_len and parts[:n] == spelling:
                best, best_len = (root, parts[n:]), n
    return best


@dataclass(frozen=True, slots=True)
class _DenyRules:
    """Compiled deny patterns: single components in one alternation, runs piece by piece."""

    any_single: re.Pattern[str] | None
    singles: tuple[tuple[str, re.Pattern[str]], ...]
    runs: tuple[tuple[str, tuple[re.Pattern[str], ...]], ...]


def _glob(pattern: str) -> str:
    """fnmatch's regular expression of one glob, without its end anchor."""
    return fnmatch.translate(pattern).removesuffix(r"\Z")


@functools.lru_cache(maxsize=256)
def _compiled(patterns: tuple[str, ...]) -> _DenyRules:
    """Deny patterns as regular expressions: compiled once per distinct pattern list.

    Leading and trailing slashes only anchor a pattern in the writer's mind: "/.env" and
    ".env/" hide every ".env" component, as ".env" does.
    """

    def rx(glob: str) -> re.Pattern[str]:
        return re.compile(_glob(glob), re.IGNORECASE)

    pieces = {p: tuple(p.strip("/").split("/")) for p in patterns}
    singles = [(p, pieces[p][0]) for p in patterns if len(pieces[p]) == 1]
    combined = None
    if singles:
        # One alternation over every single-component pattern: one match per component.
        combined = re.compile("|".join(f"(?:{_glob(glob)})" for _, glob in singles), re.IGNORECASE)
    # Each piece is matched against one component on its own: joined into one expression
    # over "/"-joined components, a wide pattern of wildcards backtracks exponentially.
    runs = tuple(
        (p, tuple(rx(piece) for piece in pieces[p])) for p in patterns if len(pieces[p]) > 1
    )
    return _DenyRules(combined, tuple((p, rx(glob)) for p, glob in singles), runs)


def denied_by(patterns: tuple[str, ...], parts: tuple[str, ...]) -> str | None:
    """The first deny pattern matching a component or a run of components, else None.

    A pattern with slashes (".git/config") matches any run of that many components, so it
    holds at every depth; matching ignores case so ".ENV" is as hidden as ".env".
    Single-component patterns are looked at first, then runs in the order given.
    """
    rules = _compiled(patterns)
    if rules.any_single is not None:
        for part in parts:
            if rules.any_single.fullmatch(part):
                return next(p for p, rx in rules.singles if rx.fullmatch(part))
    for pattern, run in rules.runs:
        for start in range(len(parts) - len(run) + 1):
            # A plain loop: a generator per window costs more than the matches themselves.
            for offset, piece in enumerate(run):
                if not piece.fullmatch(parts[start + offset]):
                    break
            else:
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
