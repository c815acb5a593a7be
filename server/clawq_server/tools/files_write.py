"""write_file: atomic create and overwrite (temp file, fsync, rename), and append, all confined."""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import stat
from typing import Any, ClassVar

from clawq_server.errors import InvalidArgument, PolicyDenied, ToolFailure
from clawq_server.model import JsonObject, SideEffect, ToolResult
from clawq_server.policy import paths
from clawq_server.policy.principal import Limits, Principal
from clawq_server.tools.files_base import FileTool, flag_property, path_property
from clawq_server.tools.schema import REASON

CREATE = "WRITE_MODE_CREATE"
OVERWRITE = "WRITE_MODE_OVERWRITE"
APPEND = "WRITE_MODE_APPEND"
MODES = ("WRITE_MODE_UNSPECIFIED", CREATE, OVERWRITE, APPEND)
_NEW_FILE_MODE = 0o644
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class WriteFileTool(FileTool):
    """Writes text or bytes to a file inside a writable root."""

    name = "write_file"
    description = (
        "Write text or base64 data to a file inside a writable root. Modes: "
        "WRITE_MODE_CREATE fails if the file exists, WRITE_MODE_OVERWRITE (default) replaces it "
        "atomically, WRITE_MODE_APPEND appends. make_parents creates missing directories."
    )
    side_effect = SideEffect.WRITE
    cacheable = False
    schema: ClassVar[JsonObject] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["path"],
        # text and data are a oneof on the wire: at most one of them.
        "not": {"required": ["text", "data"]},
        "properties": {
            "path": path_property("File path relative to an allowed root, or absolute inside one."),
            "text": {"type": "string", "description": "Content as UTF-8 text."},
            "data": {
                "type": "string",
                "contentEncoding": "base64",
                "description": "Content as base64-encoded bytes.",
            },
            "mode": {"enum": list(MODES), "default": OVERWRITE, "description": "Write mode."},
            "make_parents": flag_property("Create missing parent directories inside the root."),
        },
    }

    def check(self, principal: Principal, args: JsonObject) -> None:
        """The path check plus the size cap and content encoding, before anything is queued."""
        super().check(principal, args)
        content_of(args, principal.limits)

    def run_sync(self, principal: Principal, args: dict[str, Any]) -> ToolResult:
        """Write the content; the payload carries the number of bytes written."""
        content = content_of(args, principal.limits)
        confined = paths.confine(principal, args["path"], write=True)
        if not confined.relative:
            raise paths.is_a_directory(confined)
        parent = paths.open_parent(confined, create=bool(args["make_parents"]))
        try:
            mode = args["mode"]
            if mode == CREATE:
                _create(parent, confined, content)
            elif mode == APPEND:
                _append(parent, confined, content, principal.limits)
            else:
                _replace(parent, confined, content)
            os.fsync(parent)
        finally:
            os.close(parent)
        return ToolResult(
            output=f"wrote {len(content)} bytes to {confined.display}\n".encode(),
            payload={"bytes_written": len(content)},
        )


def content_of(args: JsonObject, limits: Limits) -> bytes:
    """The bytes to write, decoded from text or base64 data and held to the size cap."""
    try:
        if "data" in args:
            content = base64.b64decode(args["data"], validate=True)
        else:
            content = str(args.get("text", "")).encode("utf-8")
    except (binascii.Error, ValueError):
        field = "args.data" if "data" in args else "args.text"
        raise InvalidArgument.field(field, "is not valid base64 or UTF-8", reason=REASON) from None
    if len(content) > limits.max_write_bytes:
        raise PolicyDenied(
            f"content is {len(content)} bytes; the write limit is {limits.max_write_bytes}"
        )
    return content


def _write_temp(parent: int, content: bytes, mode: int) -> str:
    """A fully written, fsynced temporary file beside the target; returns its name."""
    name = f".clawq-{secrets.token_hex(8)}.tmp"
    fd = os.open(name, _TEMP_FLAGS, 0o600, dir_fd=parent)
    try:
        _write_all(fd, content)
        os.fchmod(fd, mode)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(name, dir_fd=parent)
        raise
    os.close(fd)
    return name


def _write_all(fd: int, content: bytes) -> None:
    view = memoryview(content)
    while view:
        view = view[os.write(fd, view) :]


def _create(parent: int, confined: paths.Confined, content: bytes) -> None:
    """Publish the finished temp file with link(), which fails if the name exists.

    Readers never see a partial file, and a symlink (even a dangling one) at the name is
    an existing entry, so nothing is created through it.
    """
    old = paths.lstat_at(parent, confined.name)
    if old is not None:
        if not (stat.S_ISDIR(old.st_mode) or stat.S_ISREG(old.st_mode)):
            paths.check_regular(old, confined)  # a symlink or FIFO here is refused as such
        # A regular file is never touched here, so its link count does not matter (and a
        # concurrent create briefly shows two links while it publishes).
        raise _exists(confined)
    temp = _write_temp(parent, content, _NEW_FILE_MODE)
    try:
        os.link(temp, confined.name, src_dir_fd=parent, dst_dir_fd=parent, follow_symlinks=False)
    except FileExistsError:
        raise _exists(confined) from None
    except OSError as error:
        raise paths.failure(error, parent, confined.name, confined) from None
    finally:
        os.unlink(temp, dir_fd=parent)


def _replace(parent: int, confined: paths.Confined, content: bytes) -> None:
    """Swap in a finished temp file with rename(), keeping the old file's permissions."""
    mode = _NEW_FILE_MODE
    old = paths.lstat_at(parent, confined.name)
    if old is not None:
        paths.check_regular(old, confined)
        mode = stat.S_IMODE(old.st_mode) & 0o777  # never carry setuid/setgid over
    temp = _write_temp(parent, content, mode)
    try:
        # rename() replaces the entry itself: a symlink raced in is replaced, not followed.
        os.rename(temp, confined.name, src_dir_fd=parent, dst_dir_fd=parent)
    except OSError as error:
        os.unlink(temp, dir_fd=parent)
        raise paths.failure(error, parent, confined.name, confined) from None


def _append(parent: int, confined: paths.Confined, content: bytes, limits: Limits) -> None:
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
    fd = paths.open_at(parent, confined, flags, _NEW_FILE_MODE)
    try:
        size = os.fstat(fd).st_size
        if size + len(content) > limits.file_size_bytes:
            raise PolicyDenied(
                f"appending would grow {confined.display} past {limits.file_size_bytes} bytes"
            )
        _write_all(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)


def _exists(confined: paths.Confined) -> ToolFailure:
    return ToolFailure("ALREADY_EXISTS", "FILE_EXISTS", f"{confined.display} already exists")
