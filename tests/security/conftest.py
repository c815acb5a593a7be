"""Attack trees for the security suite: a root, an outside directory with secrets, and a sibling."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from clawq_server.errors import ClawqError
from clawq_server.model import ToolResult
from clawq_server.policy.principal import Principal, Root
from clawq_server.tools.base import ToolContext
from clawq_server.tools.files import FileTool, file_tools
from clawq_server.tools.registry import ToolRegistry

SECRET = b"TOP-SECRET-OUTSIDE-THE-ROOT"
INSIDE = b"inside the root\n"


@dataclass
class Tree:
    """A real directory tree: ``root`` is allowed; ``outside`` and ``sibling`` are not."""

    base: Path
    root: Path
    outside: Path
    sibling: Path
    principal: Principal
    registry: ToolRegistry

    def with_policy(self, **changes: Any) -> Principal:
        """The tree's principal with some fields changed."""
        return replace(self.principal, **changes)

    async def call(self, tool: str, principal: Principal | None = None, **args: Any) -> ToolResult:
        """Validate, run the admission check, then run the tool, as the service does."""
        who = principal or self.principal
        validated = self.registry.validate(tool, args)
        handler = self.registry.get(tool)
        assert isinstance(handler, FileTool)
        handler.check(who, validated)
        return await handler.run(validated, ToolContext(who, "task"))

    async def run_only(
        self, tool: str, principal: Principal | None = None, **args: Any
    ) -> ToolResult:
        """Run the tool without the admission check: the run-time walk alone must hold."""
        who = principal or self.principal
        validated = self.registry.validate(tool, args)
        return await self.registry.get(tool).run(validated, ToolContext(who, "task"))


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    """A fresh tree: ws/ (the root), outside/ and ws-evil/ holding secrets."""
    root, outside, sibling = tmp_path / "ws", tmp_path / "outside", tmp_path / "ws-evil"
    _write(root / "a.txt", INSIDE)
    _write(root / "sub" / "b.txt", INSIDE)
    _write(outside / "secret.txt", SECRET)
    _write(sibling / "secret.txt", SECRET)
    registry = ToolRegistry()
    for tool in file_tools():
        registry.register(tool)
    principal = Principal("attacker", (Root(root),))
    return Tree(tmp_path, root, outside, sibling, principal, registry)


def snapshot(top: Path) -> dict[str, tuple[int, int, str]]:
    """Every entry under top (links not followed): mode, size and a content hash."""
    seen: dict[str, tuple[int, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            digest = ""
            if stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            seen[os.path.relpath(path, top)] = (st.st_mode, st.st_size, digest)
    return seen


@pytest.fixture
def untouched(tree: Tree) -> Iterator[None]:
    """Fails the test if anything outside the root (outside/, ws-evil/, the base) changed."""
    watched = [tree.outside, tree.sibling]
    before = [snapshot(p) for p in watched]
    base_before = sorted(os.listdir(tree.base))
    yield
    assert [snapshot(p) for p in watched] == before
    assert sorted(os.listdir(tree.base)) == base_before


def assert_no_secret(value: ClawqError | ToolResult) -> None:
    """The refusal or result carries no byte of the outside secret."""
    if isinstance(value, ToolResult):
        assert SECRET not in value.output
        assert SECRET.decode() not in repr(value.payload)
    else:
        assert SECRET.decode() not in str(value)
