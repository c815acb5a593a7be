"""Check-then-use races: a directory flipped to a symlink pointing out while the tools run."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from clawq_server.errors import PolicyDenied, ToolFailure
from clawq_server.model import ToolResult
from clawq_server.tools.files import FileTool
from tests.security.conftest import INSIDE, SECRET, Tree

pytestmark = pytest.mark.usefixtures("untouched")


class Flipper(threading.Thread):
    """Swaps root/flip between a real directory and a symlink to outside/, as fast as it can."""

    def __init__(self, root: Path, outside: Path) -> None:
        super().__init__(daemon=True)
        self.root = root
        (root / "flip").mkdir()
        (root / "flip" / "secret.txt").write_bytes(INSIDE)
        os.symlink(outside, root / "flip-link")
        self.halt = threading.Event()
        self.flips = 0

    def run(self) -> None:
        """Each step is one atomic rename; a full cycle leaves the starting layout."""
        r = self.root
        while not self.halt.is_set():
            os.rename(r / "flip", r / "flip-real")
            os.rename(r / "flip-link", r / "flip")
            os.rename(r / "flip", r / "flip-link")
            os.rename(r / "flip-real", r / "flip")
            self.flips += 1


@pytest.fixture
def flipper(tree: Tree) -> Iterator[Flipper]:
    """A running flipper, stopped and joined after the test."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # interleave the two threads finely
    thread = Flipper(tree.root, tree.outside)
    (tree.outside / "outside-marker.txt").write_bytes(b"")
    thread.start()
    try:
        yield thread
    finally:
        thread.halt.set()
        thread.join(timeout=10)
        sys.setswitchinterval(previous)
        (tree.outside / "outside-marker.txt").unlink()


def hammer(attempt: Callable[[], ToolResult], check: Callable[[ToolResult], None]) -> int:
    """Call attempt until both outcomes were seen many times (at most 6 s); returns refusals."""
    refusals: list[PolicyDenied] = []
    failures: list[ToolFailure] = []
    successes = 0
    start = time.monotonic()
    while time.monotonic() - start < 6:
        try:
            result = attempt()
        except PolicyDenied as error:
            refusals.append(error)
        except ToolFailure as error:
            failures.append(error)  # the directory was mid-rename
        else:
            check(result)
            successes += 1
        if len(refusals) >= 50 and successes >= 50 and time.monotonic() - start > 0.5:
            break
    assert not [e for e in refusals if SECRET.decode() in str(e)]
    assert {e.reason for e in failures} <= {"FILE_NOT_FOUND", "NOT_A_DIRECTORY"}
    return len(refusals)


def file_tool(tree: Tree, name: str) -> FileTool:
    """The named file tool, whose blocking run_sync the races call directly."""
    tool = tree.registry.get(name)
    assert isinstance(tool, FileTool)
    return tool


def test_reads_never_return_outside_content_while_a_directory_flips(
    tree: Tree, flipper: Flipper
) -> None:
    """However the flip interleaves with the walk, read_file returns inside bytes or refuses."""
    tool = file_tool(tree, "read_file")
    args = tree.registry.validate("read_file", {"path": "flip/secret.txt"})

    def check(result: ToolResult) -> None:
        assert result.output == INSIDE

    refusals = hammer(lambda: tool.run_sync(tree.principal, args), check)
    assert refusals > 0, "the symlink state was never hit: the race was not exercised"
    assert flipper.flips > 0


def test_listings_never_show_outside_entries_while_a_directory_flips(
    tree: Tree, flipper: Flipper
) -> None:
    """list_directory of the flipping directory never lists what is outside."""
    tool = file_tool(tree, "list_directory")
    args = tree.registry.validate("list_directory", {"path": "flip", "recursive": True})

    def check(result: ToolResult) -> None:
        assert b"outside-marker" not in result.output

    assert hammer(lambda: tool.run_sync(tree.principal, args), check) > 0


def test_writes_never_land_outside_while_a_directory_flips(tree: Tree, flipper: Flipper) -> None:
    """write_file into the flipping directory writes inside the root or is refused."""
    tool = file_tool(tree, "write_file")
    args = tree.registry.validate("write_file", {"path": "flip/new.txt", "text": "x"})
    assert hammer(lambda: tool.run_sync(tree.principal, args), lambda _: None) > 0
    assert not (tree.outside / "new.txt").exists()
