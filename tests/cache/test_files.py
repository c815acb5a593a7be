"""read_file through the cache: hits, and never a stale byte after any kind of change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clawq_server.cache.fingerprint import RACY_WINDOW_NS, racy
from tests.cache.conftest import Kit, MakeCache, principal_for, settle, write_direct


async def test_hit_after_miss(kit: Kit, make_cache: MakeCache) -> None:
    """The second identical read is served from the cache without running the tool."""
    (kit.root / "a.txt").write_bytes(b"hello")
    await settle(kit.root / "a.txt")
    async with make_cache() as cache:
        first = await kit.call(cache, kit.read, path="a.txt")
        second = await kit.call(cache, kit.read, path="a.txt")
    assert (first.cached, second.cached) == (False, True)
    assert second.output == b"hello"
    assert kit.read.runs == 1


@pytest.mark.parametrize("watch", [True, False], ids=["inotify", "stat-only"])
async def test_same_tick_writes_behind_our_back_are_never_stale(
    kit: Kit, make_cache: MakeCache, watch: bool
) -> None:
    """Same-size writes in quick succession by another writer are always seen, 200 times over."""
    path = kit.root / "f.txt"
    write_direct(path, b"v-000")
    async with make_cache(watch=watch) as cache:
        for i in range(200):
            content = b"v-%03d" % i
            write_direct(path, content)
            assert (await kit.call(cache, kit.read, path="f.txt")).output == content
            assert (await kit.call(cache, kit.read, path="f.txt")).output == content


@pytest.mark.parametrize("watch", [True, False], ids=["inotify", "stat-only"])
async def test_cached_file_rewritten_immediately_is_not_served(
    kit: Kit, make_cache: MakeCache, watch: bool
) -> None:
    """A cached file rewritten in place with the same size is read again, every round."""
    path = kit.root / "g.txt"
    async with make_cache(watch=watch) as cache:
        for i in range(5):
            write_direct(path, b"round-%d" % i)
            await settle(path)
            await kit.call(cache, kit.read, path="g.txt")
            assert (await kit.call(cache, kit.read, path="g.txt")).cached
            write_direct(path, b"ROUND-%d" % i)
            again = await kit.call(cache, kit.read, path="g.txt")
            assert (again.output, again.cached) == (b"ROUND-%d" % i, False)


async def test_rename_over_is_seen(kit: Kit, make_cache: MakeCache) -> None:
    """A file replaced by renaming another over it is not served from the cache."""
    path = kit.root / "r.txt"
    path.write_bytes(b"old!")
    await settle(path)
    async with make_cache() as cache:
        await kit.call(cache, kit.read, path="r.txt")
        assert (await kit.call(cache, kit.read, path="r.txt")).cached
        (kit.root / "new.tmp").write_bytes(b"new!")
        os.rename(kit.root / "new.tmp", path)
        result = await kit.call(cache, kit.read, path="r.txt")
    assert (result.output, result.cached) == (b"new!", False)


async def test_directory_swapped_under_a_cached_path(kit: Kit, make_cache: MakeCache) -> None:
    """Swapping a directory on the path for another one serves the new file, not the cached."""
    (kit.root / "d").mkdir()
    (kit.root / "e").mkdir()
    (kit.root / "d" / "f").write_bytes(b"dddd")
    (kit.root / "e" / "f").write_bytes(b"eeee")
    await settle(kit.root / "e" / "f")
    async with make_cache() as cache:
        await kit.call(cache, kit.read, path="d/f")
        assert (await kit.call(cache, kit.read, path="d/f")).cached
        os.rename(kit.root / "d", kit.root / "d-old")
        os.rename(kit.root / "e", kit.root / "d")
        result = await kit.call(cache, kit.read, path="d/f")
    assert (result.output, result.cached) == (b"eeee", False)


async def test_symlink_swapped_in_is_refused_not_served(kit: Kit, make_cache: MakeCache) -> None:
    """A directory replaced by a symlink makes the read fail as the tool does, never a hit."""
    (kit.root / "d").mkdir()
    (kit.root / "other").mkdir()
    (kit.root / "d" / "f").write_bytes(b"dddd")
    (kit.root / "other" / "f").write_bytes(b"oooo")
    await settle(kit.root / "other" / "f")
    async with make_cache() as cache:
        await kit.call(cache, kit.read, path="d/f")
        assert (await kit.call(cache, kit.read, path="d/f")).cached
        os.rename(kit.root / "d", kit.root / "d-old")
        os.symlink(kit.root / "other", kit.root / "d")
        with pytest.raises(Exception, match="symbolic link"):
            await kit.call(cache, kit.read, path="d/f")


async def test_two_principals_with_different_roots_never_share(
    kit: Kit, make_cache: MakeCache, tmp_path: Path
) -> None:
    """The same arguments under two roots give each principal its own file."""
    other_root = tmp_path / "other-root"
    other_root.mkdir()
    (kit.root / "x.txt").write_bytes(b"alice")
    (other_root / "x.txt").write_bytes(b"bobby")
    await settle(other_root / "x.txt")
    bob = principal_for(other_root, "bob")
    async with make_cache() as cache:
        await kit.call(cache, kit.read, path="x.txt")
        await kit.call(cache, kit.read, principal=bob, path="x.txt")
        alice_again = await kit.call(cache, kit.read, path="x.txt")
        bob_again = await kit.call(cache, kit.read, principal=bob, path="x.txt")
    assert (alice_again.output, bob_again.output) == (b"alice", b"bobby")
    assert alice_again.cached
    assert bob_again.cached


async def test_a_reloaded_principal_is_planned_anew(
    kit: Kit, make_cache: MakeCache, tmp_path: Path
) -> None:
    """A principal of the same name reloaded with another root reads under the new root."""
    moved = tmp_path / "moved-root"
    moved.mkdir()
    (kit.root / "x.txt").write_bytes(b"before")
    (moved / "x.txt").write_bytes(b"after!")
    await settle(moved / "x.txt")
    reloaded = principal_for(moved, kit.principal.name)
    async with make_cache() as cache:
        await kit.call(cache, kit.read, path="x.txt")
        assert (await kit.call(cache, kit.read, path="x.txt")).output == b"before"
        assert (await kit.call(cache, kit.read, principal=reloaded, path="x.txt")).output == (
            b"after!"
        )


def test_racily_clean_stamps_are_refused() -> None:
    """A stamp changed within the racy window of the read proves nothing; an older one does."""
    t = 1_700_000_000_000_000_000
    assert racy((1, 2, 3, t, t), t + RACY_WINDOW_NS - 1)
    assert racy((1, 2, 3, t - RACY_WINDOW_NS, t), t + 1)  # ctime alone is enough
    assert not racy((1, 2, 3, t, t), t + RACY_WINDOW_NS + 1)
