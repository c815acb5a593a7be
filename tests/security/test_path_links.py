"""Path attacks through the filesystem: symlinks, hard links, FIFOs, devices, sockets."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

import pytest

from clawq_server.errors import ClawqError, PolicyDenied, ToolFailure
from tests.security.conftest import INSIDE, SECRET, Tree, assert_no_secret

pytestmark = pytest.mark.usefixtures("untouched")

WRITES: list[dict[str, Any]] = [
    {"text": "pwned"},
    {"text": "pwned", "mode": "WRITE_MODE_APPEND"},
    {"text": "pwned", "mode": "WRITE_MODE_CREATE"},
    {"data": "cHduZWQ=", "mode": "WRITE_MODE_OVERWRITE"},
]
WRITE_IDS = ["overwrite", "append", "create", "overwrite-data"]


async def denied(tree: Tree, tool: str, **args: Any) -> ClawqError:
    """The call is refused as PolicyDenied within 5 s (a FIFO must not hang) without the secret."""
    with pytest.raises(PolicyDenied) as info:
        await asyncio.wait_for(tree.call(tool, **args), timeout=5)
    assert_no_secret(info.value)
    return info.value


async def test_a_symlinked_file_pointing_out_is_not_read(tree: Tree) -> None:
    """A symlink to a file outside the root is refused, not followed."""
    os.symlink(tree.outside / "secret.txt", tree.root / "link")
    error = await denied(tree, "read_file", path="link")
    assert "symbolic link" in str(error)


@pytest.mark.parametrize("extra", WRITES, ids=WRITE_IDS)
async def test_writes_through_a_symlinked_file_are_refused(
    tree: Tree, extra: dict[str, Any]
) -> None:
    """No write mode goes through a symlink to an outside file."""
    os.symlink(tree.outside / "secret.txt", tree.root / "link")
    await denied(tree, "write_file", path="link", **extra)
    assert os.readlink(tree.root / "link") == str(tree.outside / "secret.txt")


@pytest.mark.parametrize("extra", WRITES, ids=WRITE_IDS)
async def test_writes_through_a_dangling_symlink_create_nothing_outside(
    tree: Tree, extra: dict[str, Any]
) -> None:
    """A dangling symlink to outside/created.txt is refused and the target never appears."""
    os.symlink(tree.outside / "created.txt", tree.root / "dangle")
    await denied(tree, "write_file", path="dangle", **extra)
    assert not (tree.outside / "created.txt").exists()


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("read_file", {"path": "d/secret.txt"}),
        ("list_directory", {"path": "d"}),
        ("list_directory", {"path": "d/"}),
        ("write_file", {"path": "d/new.txt", "text": "x"}),
        ("write_file", {"path": "d/deeper/new.txt", "text": "x", "make_parents": True}),
        ("write_file", {"path": "d/secret.txt", "text": "x", "mode": "WRITE_MODE_APPEND"}),
        ("delete_file", {"path": "d/secret.txt"}),
    ],
    ids=["read", "list", "list-slash", "write", "make-parents", "append", "delete"],
)
async def test_a_symlinked_directory_component_is_not_crossed(
    tree: Tree, tool: str, args: dict[str, Any]
) -> None:
    """A directory symlink pointing out of the root stops every tool at that component."""
    os.symlink(tree.outside, tree.root / "d")
    await denied(tree, tool, **args)


async def test_make_parents_refuses_a_dangling_directory_symlink(tree: Tree) -> None:
    """make_parents does not create a directory outside through a dangling symlink."""
    os.symlink(tree.outside / "newdir", tree.root / "dl")
    await denied(tree, "write_file", path="dl/x.txt", text="x", make_parents=True)
    assert not (tree.outside / "newdir").exists()


async def test_symlinks_inside_the_root_are_not_followed_either(tree: Tree) -> None:
    """Even a symlink to a file in the root is refused: no link is followed under a root."""
    os.symlink(tree.root / "a.txt", tree.root / "alias")
    os.symlink("sub", tree.root / "subalias")
    await denied(tree, "read_file", path="alias")
    await denied(tree, "read_file", path="subalias/b.txt")


@pytest.mark.parametrize("path", ["loop1", "loop1/x", "self", "self/self/x"])
async def test_symlink_loops_are_refused_quickly(tree: Tree, path: str) -> None:
    """Symlink loops are refused at the first link instead of spinning."""
    os.symlink("loop2", tree.root / "loop1")
    os.symlink("loop1", tree.root / "loop2")
    os.symlink("self", tree.root / "self")
    await denied(tree, "read_file", path=path)


async def test_listing_reports_symlinks_without_following_them(tree: Tree) -> None:
    """A recursive listing shows the link as a symlink and nothing of the outside behind it."""
    os.symlink(tree.outside, tree.root / "d")
    (tree.outside / "marker-outside.txt").write_bytes(b"")
    result = await tree.call("list_directory", path="", recursive=True)
    entries = {e["path"]: e["type"] for e in result.payload["entries"]}  # type: ignore[index]
    assert entries["d"] == "symlink"
    assert not any(p.startswith("d/") for p in entries)
    assert b"marker-outside" not in result.output
    (tree.outside / "marker-outside.txt").unlink()


async def test_deleting_a_symlink_removes_the_link_not_its_target(tree: Tree) -> None:
    """delete_file on a symlink removes the link; the outside file stays."""
    os.symlink(tree.outside / "secret.txt", tree.root / "link")
    os.symlink(tree.outside, tree.root / "dirlink")
    await tree.call("delete_file", path="link")
    await tree.call("delete_file", path="dirlink")
    assert sorted(os.listdir(tree.root)) == ["a.txt", "sub"]


async def test_recursive_delete_never_follows_links_out(tree: Tree) -> None:
    """A recursive delete removes links and hard links inside the tree, never their targets."""
    victim = tree.root / "victim"
    (victim / "inner").mkdir(parents=True)
    (victim / "inner" / "f.txt").write_bytes(INSIDE)
    os.symlink(tree.outside, victim / "inner" / "out-dir")
    os.symlink(tree.outside / "secret.txt", victim / "out-file")
    os.link(tree.outside / "secret.txt", victim / "hard")
    principal = tree.with_policy(allow_recursive_delete=True)
    result = await tree.call("delete_file", principal, path="victim", recursive=True)
    assert result.payload == {"deleted": 6}
    assert not victim.exists()
    assert (tree.outside / "secret.txt").read_bytes() == SECRET


@pytest.mark.parametrize(
    ("tool", "extra"),
    [("read_file", {}), *[("write_file", w) for w in WRITES]],
    ids=["read", *WRITE_IDS],
)
async def test_a_hard_link_to_an_outside_file_is_refused(
    tree: Tree, tool: str, extra: dict[str, Any]
) -> None:
    """A hard link shares the outside inode, so reads and writes of it are refused."""
    os.link(tree.outside / "secret.txt", tree.root / "hl")
    if extra.get("mode") == "WRITE_MODE_CREATE":
        # create never opens an existing name: it fails as existing, touching nothing.
        with pytest.raises(ToolFailure) as info:
            await tree.call(tool, path="hl", **extra)
        assert info.value.reason == "FILE_EXISTS"
        assert (tree.outside / "secret.txt").read_bytes() == SECRET
        return
    error = await denied(tree, tool, path="hl", **extra)
    assert "hard link" in str(error)


@pytest.mark.parametrize(
    ("tool", "extra"),
    [("read_file", {}), *[("write_file", w) for w in WRITES]],
    ids=["read", *WRITE_IDS],
)
async def test_a_fifo_is_refused_without_blocking(
    tree: Tree, tool: str, extra: dict[str, Any]
) -> None:
    """A FIFO with no peer is refused at once instead of hanging the worker."""
    os.mkfifo(tree.root / "pipe")
    await denied(tree, tool, path="pipe", **extra)


async def test_a_fifo_with_a_writer_waiting_is_still_not_read(tree: Tree) -> None:
    """A FIFO whose other end is open (data ready) is still refused, not read."""
    os.mkfifo(tree.root / "pipe")
    reader = os.open(tree.root / "pipe", os.O_RDONLY | os.O_NONBLOCK)
    writer = os.open(tree.root / "pipe", os.O_WRONLY)
    try:
        os.write(writer, SECRET)
        await denied(tree, "read_file", path="pipe")
    finally:
        os.close(writer)
        os.close(reader)


async def test_dev_zero_through_a_symlink_is_refused(tree: Tree) -> None:
    """A symlink to /dev/zero (an endless read) is refused."""
    os.symlink("/dev/zero", tree.root / "zero")
    await denied(tree, "read_file", path="zero")
    await denied(tree, "write_file", path="zero", text="x", mode="WRITE_MODE_APPEND")


async def test_a_device_node_inside_the_root_is_refused(tree: Tree) -> None:
    """A character device planted in the root is refused before it is opened."""
    try:
        os.mknod(tree.root / "zero", 0o666 | 0o020000, os.makedev(1, 5))
    except PermissionError:
        pytest.skip("creating device nodes needs CAP_MKNOD")
    error = await denied(tree, "read_file", path="zero")
    assert "not a regular file" in str(error)
    await denied(tree, "write_file", path="zero", text="x", mode="WRITE_MODE_APPEND")
    await denied(tree, "write_file", path="zero", text="x")


async def test_a_unix_socket_is_refused(tree: Tree) -> None:
    """A Unix socket in the root is neither read nor replaced."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(tree.root / "sock"))
        await denied(tree, "read_file", path="sock")
        await denied(tree, "write_file", path="sock", text="x")
    finally:
        sock.close()


async def test_listing_reports_special_files_as_other(tree: Tree) -> None:
    """FIFOs show up as type "other" in a listing, which does not open them."""
    os.mkfifo(tree.root / "pipe")
    result = await asyncio.wait_for(tree.call("list_directory", path=""), timeout=5)
    entries = {e["path"]: e["type"] for e in result.payload["entries"]}  # type: ignore[index]
    assert entries["pipe"] == "other"


async def test_a_file_where_a_directory_is_expected_fails_cleanly(tree: Tree) -> None:
    """A path through a regular file fails as NOT_A_DIRECTORY, not as a crash."""
    with pytest.raises(ToolFailure) as info:
        await tree.call("read_file", path="a.txt/x")
    assert info.value.reason == "NOT_A_DIRECTORY"
