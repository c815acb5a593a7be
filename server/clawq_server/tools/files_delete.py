"""delete_file: files and symlinks themselves, whole trees only where policy allows it."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, ClassVar

from clawq_server.errors import PolicyDenied, ToolFailure
from clawq_server.model import JsonObject, SideEffect, ToolResult
from clawq_server.policy import paths
from clawq_server.policy.principal import Principal
from clawq_server.tools.files_base import FileTool, flag_property, path_property


class DeleteFileTool(FileTool):
    """Deletes a file (or a symlink, never its target) inside a writable root."""

    name = "delete_file"
    description = (
        "Delete a file or symlink inside a writable root. recursive=true deletes a directory "
        "tree, only where policy allows it; symlinks inside are removed, never followed."
    )
    side_effect = SideEffect.WRITE
    cacheable = False
    schema: ClassVar[JsonObject] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["path"],
        "properties": {
            "path": path_property("Path relative to an allowed root, or absolute inside one."),
            "recursive": flag_property("Delete a directory and everything under it."),
        },
    }

    def check(self, principal: Principal, args: JsonObject) -> None:
        """The path check, the recursive-delete policy and the refusal to delete a root."""
        confined = paths.confine(
            principal, str(args.get("path", "")), write=True, field="args.path"
        )
        if args.get("recursive") and not principal.allow_recursive_delete:
            raise PolicyDenied(f"recursive delete is not allowed for {principal.name!r}")
        if _holds_a_root(principal, confined):
            raise PolicyDenied(f"{confined.absolute} is or holds an allowed root; not deleted")

    def run_sync(self, principal: Principal, args: dict[str, Any]) -> ToolResult:
        """Delete; the payload carries how many entries went."""
        self.check(principal, args)
        confined = paths.confine(principal, args["path"], write=True)
        parent = paths.open_parent(confined)
        try:
            st = paths.lstat_at(parent, confined.name)
            if st is None:
                raise paths.not_found(confined)
            if not stat.S_ISDIR(st.st_mode):
                _unlink(parent, confined)
                count = 1
            elif not args["recursive"]:
                raise ToolFailure(
                    "FAILED_PRECONDITION",
                    "IS_A_DIRECTORY",
                    f"{confined.display} is a directory; pass recursive=true to delete it",
                )
            else:
                count = _remove_tree(parent, confined, principal.deny_patterns)
            os.fsync(parent)
        finally:
            os.close(parent)
        return ToolResult(
            output=f"deleted {confined.display}\n".encode(), payload={"deleted": count}
        )


def _holds_a_root(principal: Principal, confined: paths.Confined) -> bool:
    """True when the path is a root or an ancestor of one (deleting it would delete a root)."""
    if not confined.relative:
        return True
    target = confined.absolute.parts
    for root in principal.roots:
        for spelling in (Path(os.path.abspath(root.path)), paths.resolve_root(root)):
            if spelling.parts[: len(target)] == target:
                return True
    return False


def _unlink(parent: int, confined: paths.Confined) -> None:
    try:
        os.unlink(confined.name, dir_fd=parent)  # unlink never follows a symlink
    except OSError as error:
        raise paths.failure(error, parent, confined.name, confined) from None


def _remove_tree(parent: int, confined: paths.Confined, patterns: tuple[str, ...]) -> int:
    """Delete a tree after a first pass proves no entry in it is hidden by a deny pattern."""
    try:
        for _, _, rel, _ in paths.walk_tree(parent, confined.name, confined.relative):
            pattern = paths.denied_by(patterns, rel)
            if pattern is not None:
                raise PolicyDenied(
                    f"{confined.display} holds {'/'.join(rel)}, which matches the deny "
                    f"pattern {pattern!r}; nothing was deleted"
                )
        count = 0
        for fd, name, rel, is_dir in paths.walk_tree(parent, confined.name, confined.relative):
            if paths.denied_by(patterns, rel) is not None:
                continue  # appeared after the first pass: left alone, so its directory stays
            if is_dir:
                os.rmdir(name, dir_fd=fd)
            else:
                os.unlink(name, dir_fd=fd)
            count += 1
    except OSError as error:
        raise paths.failure(error, parent, confined.name, confined) from None
    return count
