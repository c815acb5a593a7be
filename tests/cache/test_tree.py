"""list_directory through the cache: any change anywhere in a recursive listing invalidates it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clawq_server.model import ToolResult
from clawq_server.tools.base import ToolContext
from tests.cache.conftest import Kit, MakeCache, principal_for, settle


def build_tree(root: Path) -> Path:
    """Three levels of directories with a few files each; returns the deepest directory."""
    deep = root / "a" / "b" / "c"
    deep.mkdir(parents=True)
    for folder in (root / "a", root / "a" / "b", deep):
        for i in range(3):
            (folder / f"f{i}.txt").write_bytes(b"x" * i)
    return deep


def add(deep: Path) -> None:
    """Add a file deep down."""
    (deep / "new.txt").write_bytes(b"n")


def remove(deep: Path) -> None:
    """Remove a file deep down."""
    (deep / "f1.txt").unlink()


def resize(deep: Path) -> None:
    """Grow a file deep down, in place."""
    with open(deep / "f2.txt", "ab") as handle:
        handle.write(b"more")


def make_dir(deep: Path) -> None:
    """Create an empty directory deep down."""
    (deep / "sub").mkdir()


def rename(deep: Path) -> None:
    """Rename a file deep down."""
    os.rename(deep / "f0.txt", deep / "g0.txt")


@pytest.mark.parametrize("change", [add, remove, resize, make_dir, rename])
@pytest.mark.parametrize("watch", [True, False], ids=["inotify", "stat-only"])
async def test_deep_change_invalidates_recursive_listing(
    kit: Kit, make_cache: MakeCache, change: Callable[[Path], None], watch: bool
) -> None:
    """A file added, removed, resized or renamed three levels down is never listed stale."""
    deep = build_tree(kit.root)
    await settle(deep / "f2.txt")
    async with make_cache(watch=watch) as cache:
        first = await kit.call(cache, kit.listing, recursive=True)
        assert (await kit.call(cache, kit.listing, recursive=True)).cached
        change(deep)
        after = await kit.call(cache, kit.listing, recursive=True)
        fresh = await ListingOracle.run(kit)
    assert not after.cached
    assert after.payload == fresh.payload != first.payload


class ListingOracle:
    """The listing computed without any cache."""

    @staticmethod
    async def run(kit: Kit) -> ToolResult:
        args = kit.registry.validate("list_directory", {"recursive": True})
        return await kit.listing.inner.run(args, ToolContext(kit.principal, "oracle"))


async def test_listings_under_different_roots_never_alias(kit: Kit, make_cache: MakeCache) -> None:
    """A root and a root inside it list the same directory with their own relative paths."""
    deep = build_tree(kit.root)
    await settle(deep / "f2.txt")
    inner = principal_for(kit.root / "a", "inner")
    async with make_cache() as cache:
        outer_listing = await kit.call(cache, kit.listing, path="a", recursive=True)
        inner_listing = await kit.call(cache, kit.listing, principal=inner, recursive=True)
        inner_again = await kit.call(cache, kit.listing, principal=inner, recursive=True)
    assert outer_listing.output.startswith(b"a/")
    assert inner_again.cached
    assert inner_again.output == inner_listing.output
    assert not inner_listing.output.startswith(b"a/")


async def test_unrelated_sibling_change_keeps_a_file_cached(
    kit: Kit, make_cache: MakeCache
) -> None:
    """Creating another file beside a cached one does not throw the cached one away."""
    (kit.root / "keep.txt").write_bytes(b"keep")
    await settle(kit.root / "keep.txt")
    async with make_cache() as cache:
        await kit.call(cache, kit.read, path="keep.txt")
        (kit.root / "other.txt").write_bytes(b"other")
        assert (await kit.call(cache, kit.read, path="keep.txt")).cached


def grow(folder: Path) -> None:
    """Create files in folder until its own size (what a listing shows for it) changes."""
    before = folder.stat().st_size
    for i in range(5000):
        (folder / f"{i:04d}-{'n' * 120}").touch()
        if folder.stat().st_size != before:
            return
    raise AssertionError("the directory's size never changed")


@pytest.mark.parametrize(
    ("args", "edge"),
    [({}, "sub"), ({"recursive": True, "max_depth": 2}, "sub/inner")],
    ids=["flat", "at-max-depth"],
)
@pytest.mark.parametrize("watch", [True, False], ids=["inotify", "stat-only"])
async def test_a_directory_listed_but_not_entered_is_never_listed_stale(
    kit: Kit, make_cache: MakeCache, args: dict[str, Any], edge: str, watch: bool
) -> None:
    """A listing shows the size of a directory it does not enter; what is created inside
    that directory changes the size, so the cached listing must go."""
    (kit.root / "sub" / "inner").mkdir(parents=True)
    (kit.root / "f.txt").write_bytes(b"f")
    await settle(kit.root / "f.txt")
    async with make_cache(watch=watch) as cache:
        first = await kit.call(cache, kit.listing, **args)
        assert (await kit.call(cache, kit.listing, **args)).cached
        grow(kit.root / edge)
        after = await kit.call(cache, kit.listing, **args)
    checked = kit.registry.validate("list_directory", args)
    fresh = await kit.listing.inner.run(checked, ToolContext(kit.principal, "oracle"))
    assert not after.cached
    assert after.payload == fresh.payload != first.payload


@pytest.mark.parametrize("watch", [True, False], ids=["inotify", "stat-only"])
async def test_an_entry_past_the_cap_ends_a_complete_listing(
    kit: Kit, make_cache: MakeCache, watch: bool
) -> None:
    """A listing that held every entry under max_entries is truncated once one more appears:
    a re-proving walk (stat-only here, or another server sharing Redis) must see it."""
    for name in ("a", "b"):
        (kit.root / name).write_bytes(name.encode())
    await settle(kit.root / "b")
    async with make_cache(watch=watch) as cache:
        first = await kit.call(cache, kit.listing, max_entries=2)
        assert (await kit.call(cache, kit.listing, max_entries=2)).cached
        (kit.root / "c").write_bytes(b"c")
        after = await kit.call(cache, kit.listing, max_entries=2)
    assert not after.cached
    assert (first.payload or {}).get("truncated") is False
    assert (after.payload or {}).get("truncated") is True
