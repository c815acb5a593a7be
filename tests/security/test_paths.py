"""Path attacks without links: climbs, absolute paths, sibling prefixes, NUL, deny rules, roots."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from clawq_server.errors import ClawqError, InvalidArgument, PolicyDenied, ToolFailure
from clawq_server.policy import paths
from clawq_server.policy.principal import Root
from clawq_server.tools.command import mounts_for
from tests.security.conftest import INSIDE, SECRET, Tree, assert_no_secret

pytestmark = pytest.mark.usefixtures("untouched")

# Every tool with the extra arguments it needs to be a complete call.
TOOLS: list[tuple[str, dict[str, Any]]] = [
    ("read_file", {}),
    ("list_directory", {}),
    ("write_file", {"text": "pwned"}),
    ("delete_file", {}),
]
TOOL_IDS = [name for name, _ in TOOLS]


async def refused(tree: Tree, tool: str, *, kinds: Any = PolicyDenied, **args: Any) -> ClawqError:
    """Admission and the bare run both refuse the call, and neither leaks the secret."""
    with pytest.raises(kinds) as admitted:
        await tree.call(tool, **args)
    assert_no_secret(admitted.value)
    with pytest.raises(kinds) as ran:
        await tree.run_only(tool, **args)
    assert_no_secret(ran.value)
    error: ClawqError = ran.value
    return error


@pytest.mark.parametrize(("tool", "extra"), TOOLS, ids=TOOL_IDS)
@pytest.mark.parametrize(
    "path",
    [
        "../outside/secret.txt",
        "sub/../../outside/secret.txt",
        "./sub/./../../outside/secret.txt",
        "../../../../../../../../etc/passwd",
        "../ws-evil/secret.txt",
        "..",
        "sub/../..",
    ],
)
async def test_dotdot_climbing_above_the_root_is_refused(
    tree: Tree, tool: str, extra: dict[str, Any], path: str
) -> None:
    """A relative path whose `..` climbs above the root is refused by every tool."""
    error = await refused(tree, tool, path=path, **extra)
    assert "climbs above" in str(error)


@pytest.mark.parametrize(("tool", "extra"), TOOLS, ids=TOOL_IDS)
@pytest.mark.parametrize(
    "template",
    [
        "{outside}/secret.txt",
        "{root}/../outside/secret.txt",
        "{root}/sub/../../outside/secret.txt",
        "/etc/passwd",
        "/",
        "{sibling}/secret.txt",
        "{root}/../ws-evil/secret.txt",
        "{root}-evil/secret.txt",
    ],
)
async def test_absolute_paths_outside_every_root_are_refused(
    tree: Tree, tool: str, extra: dict[str, Any], template: str
) -> None:
    """Absolute paths outside the roots, the sibling `ws-evil` of root `ws` too, are refused."""
    path = template.format(outside=tree.outside, root=tree.root, sibling=tree.sibling)
    error = await refused(tree, tool, path=path, **extra)
    assert "outside every allowed root" in str(error)


def test_sibling_with_the_root_as_name_prefix_is_not_inside(tree: Tree) -> None:
    """Containment compares components: /x/ws-evil is not inside /x/ws, even resolved."""
    assert not paths.real_path_inside(tree.principal, tree.sibling / "secret.txt")
    assert paths.real_path_inside(tree.principal, tree.root / "a.txt")
    with pytest.raises(PolicyDenied):
        paths.confine(tree.principal, f"{tree.root}-evil")


@pytest.mark.parametrize(("tool", "extra"), TOOLS, ids=TOOL_IDS)
async def test_nul_bytes_in_a_path_are_invalid(
    tree: Tree, tool: str, extra: dict[str, Any]
) -> None:
    """A NUL byte (which C would truncate at) is an invalid argument; admission names the
    argument, args.path."""
    path = "a.txt\x00/../../outside/secret.txt"
    await refused(tree, tool, kinds=InvalidArgument, path=path, **extra)
    with pytest.raises(InvalidArgument) as admitted:
        await tree.call(tool, path=path, **extra)
    assert [v.field for v in admitted.value.violations] == ["args.path"]


async def test_an_overlong_component_is_an_invalid_argument(tree: Tree) -> None:
    """A component longer than NAME_MAX is refused as invalid, not passed on as a crash."""
    await refused(tree, "read_file", kinds=InvalidArgument, path="x" * 300)


@pytest.mark.parametrize("path", ["\U0001f600" * 64, "d/" + "\u00e9" * 128, "a/b/" + "x" * 256])
async def test_a_component_over_name_max_in_bytes_is_invalid(tree: Tree, path: str) -> None:
    """NAME_MAX counts UTF-8 bytes: 64 four-byte characters are too long for one name."""
    await refused(tree, "read_file", kinds=InvalidArgument, path=path)


async def test_an_overlong_path_is_refused_by_the_schema(tree: Tree) -> None:
    """A path beyond PATH_MAX fails schema validation naming args.path."""
    with pytest.raises(InvalidArgument) as info:
        await tree.call("read_file", path="a/" * 3000)
    assert info.value.violations[0].field == "args.path"


DENIED = [
    ".ssh/id_rsa",
    ".env",
    ".git/config",
    "x.pem",
    "y.key",
    "sub/.ssh/id_rsa",
    "deep/a/b/.git/config",
    "nested/dir/.env",
    "certs/server.PEM",
    ".ENV",
    "keys/.ssh/authorized_keys",
]


def _plant(tree: Tree, relative: str) -> Path:
    target = tree.root / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(SECRET)
    return target


@pytest.mark.parametrize("relative", DENIED)
async def test_deny_patterns_hide_secrets_from_reads(tree: Tree, relative: str) -> None:
    """Files matching a deny pattern are refused, at any depth and in any case."""
    _plant(tree, relative)
    error = await refused(tree, "read_file", path=relative)
    assert "deny pattern" in str(error)
    await refused(tree, "read_file", path=str(tree.root / relative))


@pytest.mark.parametrize("relative", DENIED)
async def test_deny_patterns_refuse_writes_and_deletes(tree: Tree, relative: str) -> None:
    """Writing over or deleting a denied file is refused and leaves it as it was."""
    target = _plant(tree, relative)
    await refused(tree, "write_file", path=relative, text="overwritten")
    await refused(tree, "write_file", path=relative, text="more", mode="WRITE_MODE_APPEND")
    await refused(tree, "delete_file", path=relative)
    assert target.read_bytes() == SECRET


async def test_listing_leaves_denied_entries_out(tree: Tree) -> None:
    """A recursive listing of the root shows none of the denied entries, nor what is under them."""
    for relative in DENIED:
        _plant(tree, relative)
    result = await tree.call("list_directory", path="", recursive=True)
    listed = {entry["path"] for entry in result.payload["entries"]}  # type: ignore[index]
    assert not any(
        paths.denied_by(tree.principal.deny_patterns, tuple(p.split("/"))) for p in listed
    )
    assert {"a.txt", "sub", "sub/b.txt", "deep/a/b", "keys"} <= listed
    await refused(tree, "list_directory", path=".ssh")


async def test_recursive_delete_of_a_tree_holding_a_denied_file_deletes_nothing(
    tree: Tree,
) -> None:
    """Deleting a directory that contains `.env` is refused before anything is removed."""
    target = _plant(tree, "proj/nested/.env")
    (tree.root / "proj" / "keep.txt").write_bytes(INSIDE)
    principal = tree.with_policy(allow_recursive_delete=True)
    with pytest.raises(PolicyDenied):
        await tree.call("delete_file", principal, path="proj", recursive=True)
    assert target.read_bytes() == SECRET
    assert (tree.root / "proj" / "keep.txt").exists()


@pytest.mark.parametrize(
    ("tool", "extra"),
    [
        ("write_file", {"text": "x"}),
        ("write_file", {"text": "x", "mode": "WRITE_MODE_APPEND"}),
        ("write_file", {"text": "x", "mode": "WRITE_MODE_CREATE", "path": "new.txt"}),
        ("delete_file", {}),
    ],
    ids=["overwrite", "append", "create", "delete"],
)
async def test_a_read_only_root_refuses_every_change(
    tree: Tree, tool: str, extra: dict[str, Any]
) -> None:
    """Writes, appends, creates and deletes under a read-only root are refused; reads work."""
    readonly = tree.with_policy(roots=(Root(tree.root, writable=False),))
    args = {"path": "a.txt", **extra}
    with pytest.raises(PolicyDenied, match="read-only"):
        await tree.call(tool, readonly, **args)
    with pytest.raises(PolicyDenied, match="read-only"):
        await tree.run_only(tool, readonly, **args)
    assert (tree.root / "a.txt").read_bytes() == INSIDE
    assert not (tree.root / "new.txt").exists()
    assert (await tree.call("read_file", readonly, path="a.txt")).output == INSIDE


async def test_the_most_specific_root_decides_writability(tree: Tree) -> None:
    """A read-only root nested in a writable one protects its files from absolute writes."""
    frozen = tree.root / "sub"
    principal = tree.with_policy(roots=(Root(tree.root), Root(frozen, writable=False)))
    with pytest.raises(PolicyDenied):
        await tree.call("write_file", principal, path=str(frozen / "b.txt"), text="x")
    assert (frozen / "b.txt").read_bytes() == INSIDE
    result = await tree.call("read_file", principal, path=str(frozen / "b.txt"))
    assert result.output == INSIDE


async def test_recursive_delete_is_refused_without_policy(tree: Tree) -> None:
    """recursive=true is denied unless the principal allows recursive deletes."""
    await refused(tree, "delete_file", path="sub", recursive=True)
    assert (tree.root / "sub" / "b.txt").read_bytes() == INSIDE


async def test_deleting_a_directory_without_recursive_fails(tree: Tree) -> None:
    """A plain delete of a directory fails as IS_A_DIRECTORY and removes nothing."""
    with pytest.raises(ToolFailure) as info:
        await tree.call("delete_file", path="sub")
    assert info.value.reason == "IS_A_DIRECTORY"
    assert (tree.root / "sub" / "b.txt").exists()


@pytest.mark.parametrize("template", [".", "sub/..", "{root}", "{root}/", "{root}/sub/.."])
async def test_deleting_the_root_is_refused(tree: Tree, template: str) -> None:
    """No spelling of the root itself can be deleted, even with recursive delete allowed."""
    principal = tree.with_policy(allow_recursive_delete=True)
    path = template.format(root=tree.root)
    with pytest.raises(PolicyDenied, match="root"):
        await tree.call("delete_file", principal, path=path, recursive=True)
    with pytest.raises(PolicyDenied, match="root"):
        await tree.run_only("delete_file", principal, path=path, recursive=True)
    assert (tree.root / "a.txt").exists()


async def test_deleting_a_nested_root_through_its_parent_root_is_refused(tree: Tree) -> None:
    """A root inside another root cannot be deleted through the outer one."""
    inner = tree.root / "sub"
    principal = tree.with_policy(roots=(Root(tree.root), Root(inner)), allow_recursive_delete=True)
    with pytest.raises(PolicyDenied):
        await tree.call("delete_file", principal, path="sub", recursive=True)
    assert inner.is_dir()


async def test_a_principal_without_roots_reaches_nothing(tree: Tree) -> None:
    """No roots means every path is refused."""
    nobody = tree.with_policy(roots=())
    with pytest.raises(PolicyDenied):
        await tree.call("read_file", nobody, path="a.txt")


async def test_legitimate_calls_inside_the_root_succeed(tree: Tree) -> None:
    """Relative, absolute and `..`-within-the-root paths work for every tool."""
    assert (await tree.call("read_file", path="a.txt")).output == INSIDE
    assert (await tree.call("read_file", path=str(tree.root / "a.txt"))).output == INSIDE
    assert (await tree.call("read_file", path="sub/../sub/./b.txt")).output == INSIDE
    await tree.call("write_file", path="sub/new.txt", text="hello")
    assert (tree.root / "sub" / "new.txt").read_text() == "hello"
    listing = await tree.call("list_directory", path=str(tree.root), recursive=True)
    assert b"sub/new.txt\n" in listing.output
    await tree.call("delete_file", path="sub/new.txt")
    assert not (tree.root / "sub" / "new.txt").exists()


async def test_unicode_names_work(tree: Tree) -> None:
    """Non-ASCII names are ordinary names."""
    await tree.call("write_file", path="données/ünïcode ✓.txt", text="ok", make_parents=True)
    result = await tree.call("read_file", path="données/ünïcode ✓.txt")
    assert result.output == b"ok"


async def test_a_symlinked_root_is_resolved_once_and_usable(tree: Tree) -> None:
    """An administrator's root may itself be a symlink; both spellings of a path work."""
    alias = tree.base / "ws-alias"
    os.symlink(tree.root, alias)
    principal = tree.with_policy(roots=(Root(alias),))
    assert (await tree.call("read_file", principal, path="a.txt")).output == INSIDE
    for spelling in (alias, tree.root):
        result = await tree.call("read_file", principal, path=str(spelling / "a.txt"))
        assert result.output == INSIDE
    os.unlink(alias)


async def test_a_nested_read_only_root_holds_for_relative_paths_too(tree: Tree) -> None:
    """A relative path into a read-only root nested in the first root is still read-only."""
    principal = tree.with_policy(roots=(Root(tree.root), Root(tree.root / "sub", writable=False)))
    with pytest.raises(PolicyDenied, match="read-only"):
        await tree.call("write_file", principal, path="sub/b.txt", text="x")
    assert (tree.root / "sub" / "b.txt").read_bytes() == INSIDE


async def test_deleting_a_directory_that_holds_a_root_is_refused(tree: Tree) -> None:
    """A recursive delete of an ancestor of another root is refused; the root survives."""
    inner = tree.root / "sub" / "inner"
    inner.mkdir()
    principal = tree.with_policy(roots=(Root(tree.root), Root(inner)), allow_recursive_delete=True)
    with pytest.raises(PolicyDenied, match="root"):
        await tree.call("delete_file", principal, path="sub", recursive=True)
    assert inner.is_dir()


@pytest.mark.parametrize(("tool", "extra"), TOOLS, ids=TOOL_IDS)
async def test_a_nested_root_swapped_for_a_symlink_is_refused(
    tree: Tree, tool: str, extra: dict[str, Any]
) -> None:
    """Through the writable outer root, the nested root's parent is renamed and a symlink
    to outside left at the nested root's path (what a command or Python run can do): the
    nested root is refused as moved, for every tool, before anything is read or written."""
    nested = tree.root / "sub" / "inner"
    nested.mkdir()
    principal = tree.with_policy(roots=(Root.at(tree.root), Root.at(nested)))
    (tree.root / "sub").rename(tree.root / "sub-moved")
    (tree.root / "sub").mkdir()
    nested.symlink_to(tree.outside)
    with pytest.raises(ToolFailure) as moved:
        await tree.run_only(tool, principal, path=str(nested / "secret.txt"), **extra)
    assert moved.value.reason == "ROOT_MOVED"
    assert_no_secret(moved.value)


def test_commands_are_not_given_a_swapped_root(tree: Tree) -> None:
    """The sandbox would bind whatever the root's path leads to now: refused instead."""
    nested = tree.root / "sub" / "ro"
    nested.mkdir()
    principal = tree.with_policy(roots=(Root.at(tree.root), Root.at(nested, writable=False)))
    assert [m.writable for m in mounts_for(principal)] == [True, False]
    (tree.root / "sub").rename(tree.root / "sub-moved")
    (tree.root / "sub").mkdir()
    nested.symlink_to(tree.outside)
    with pytest.raises(ToolFailure, match="no longer the directory"):
        mounts_for(principal)
