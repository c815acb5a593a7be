"""The file tools on legitimate input: ranges, write modes, atomicity, listings, deletes."""

from __future__ import annotations

import asyncio
import base64
import os
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from clawq_server.errors import InvalidArgument, PolicyDenied, ToolFailure
from clawq_server.model import ToolResult
from clawq_server.policy.principal import Limits, Principal, Root
from clawq_server.tools.base import ToolContext
from clawq_server.tools.files import FileTool, file_tools
from clawq_server.tools.registry import ToolRegistry

DIGITS = bytes(range(100))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A workspace with a 100-byte file."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "digits.bin").write_bytes(DIGITS)
    return ws


@pytest.fixture
def registry() -> ToolRegistry:
    """The four file tools."""
    reg = ToolRegistry()
    for tool in file_tools():
        reg.register(tool)
    return reg


def principal_for(root: Path, **limits: Any) -> Principal:
    """A principal of root with some limits changed."""
    return Principal("me", (Root(root),), limits=replace(Limits(), **limits))


async def call(
    registry: ToolRegistry,
    root: Path,
    tool: str,
    limits: dict[str, Any] | None = None,
    **args: Any,
) -> ToolResult:
    """Validate and run one call as a principal of root."""
    who = principal_for(root, **(limits or {}))
    return await registry.get(tool).run(registry.validate(tool, args), ToolContext(who, "t"))


def leftovers(directory: Path) -> list[str]:
    """Temporary files a write left behind."""
    return [n for n in os.listdir(directory) if n.startswith(".clawq-")]


@pytest.mark.parametrize(
    "case",
    [
        (0, 0, DIGITS, False),
        (10, 5, DIGITS[10:15], True),
        (95, 10, DIGITS[95:], False),
        (100, 0, b"", False),
        (500, 1, b"", False),
        (0, 100, DIGITS, False),
        (0, 99, DIGITS[:99], True),
    ],
)
async def test_read_returns_the_range_and_flags_truncation(
    registry: ToolRegistry, root: Path, case: tuple[int, int, bytes, bool]
) -> None:
    """offset/limit select bytes; truncated says the file continues past what was returned."""
    offset, limit, expected, truncated = case
    result = await call(registry, root, "read_file", path="digits.bin", offset=offset, limit=limit)
    assert result.output == expected
    assert result.truncated is truncated
    assert result.payload == {"size": 100, "offset": offset}


async def test_read_is_capped_by_the_principal_limit(registry: ToolRegistry, root: Path) -> None:
    """limit 0, or a limit above the cap, returns at most max_read_bytes and says truncated."""
    for limit in (0, 1000):
        result = await call(
            registry, root, "read_file", {"max_read_bytes": 16}, path="digits.bin", limit=limit
        )
        assert result.output == DIGITS[:16]
        assert result.truncated


async def test_read_of_missing_file_or_directory_fails(registry: ToolRegistry, root: Path) -> None:
    """A missing file is FILE_NOT_FOUND (code NOT_FOUND); a directory is IS_A_DIRECTORY."""
    with pytest.raises(ToolFailure) as missing:
        await call(registry, root, "read_file", path="nope.txt")
    assert (missing.value.code, missing.value.reason) == ("NOT_FOUND", "FILE_NOT_FOUND")
    (root / "d").mkdir()
    with pytest.raises(ToolFailure) as directory:
        await call(registry, root, "read_file", path="d")
    assert directory.value.reason == "IS_A_DIRECTORY"


async def test_overwrite_is_atomic_and_leaves_no_temp_files(
    registry: ToolRegistry, root: Path
) -> None:
    """A reader racing overwrites only ever sees one whole version, never a mix or a stub."""
    size = 256 << 10
    versions = {b"a" * size, b"b" * size}
    (root / "big.txt").write_bytes(b"a" * size)
    seen: set[bytes] = set()
    halt = threading.Event()

    def reader() -> None:
        while not halt.is_set():
            seen.add((root / "big.txt").read_bytes())

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(30):
            await call(registry, root, "write_file", path="big.txt", text=("ab"[i % 2]) * size)
    finally:
        halt.set()
        thread.join(timeout=10)
    assert seen <= versions
    assert (root / "big.txt").read_bytes() == b"b" * size
    assert leftovers(root) == []


async def test_overwrite_keeps_the_file_mode(registry: ToolRegistry, root: Path) -> None:
    """Replacing a file keeps its permission bits."""
    (root / "run.sh").write_text("old")
    os.chmod(root / "run.sh", 0o600)
    result = await call(registry, root, "write_file", path="run.sh", text="new")
    assert result.payload == {"bytes_written": 3}
    assert (root / "run.sh").stat().st_mode & 0o777 == 0o600


async def test_create_fails_when_the_file_exists(registry: ToolRegistry, root: Path) -> None:
    """WRITE_MODE_CREATE refuses an existing file (ALREADY_EXISTS) and leaves it alone."""
    with pytest.raises(ToolFailure) as info:
        await call(
            registry, root, "write_file", path="digits.bin", text="x", mode="WRITE_MODE_CREATE"
        )
    assert (info.value.code, info.value.reason) == ("ALREADY_EXISTS", "FILE_EXISTS")
    assert (root / "digits.bin").read_bytes() == DIGITS
    await call(registry, root, "write_file", path="fresh.txt", text="x", mode="WRITE_MODE_CREATE")
    assert (root / "fresh.txt").read_text() == "x"
    assert (root / "fresh.txt").stat().st_nlink == 1
    assert leftovers(root) == []


async def test_concurrent_creates_have_exactly_one_winner(
    registry: ToolRegistry, root: Path
) -> None:
    """Of many simultaneous creates of one name, one succeeds and the rest fail FILE_EXISTS."""
    outcomes = await asyncio.gather(
        *(
            call(
                registry, root, "write_file", path="once.txt", text=str(i), mode="WRITE_MODE_CREATE"
            )
            for i in range(8)
        ),
        return_exceptions=True,
    )
    winners = [o for o in outcomes if isinstance(o, ToolResult)]
    assert len(winners) == 1
    assert all(
        isinstance(o, ToolFailure) and o.reason == "FILE_EXISTS"
        for o in outcomes
        if o not in winners
    )
    assert leftovers(root) == []


async def test_append_adds_to_the_end_and_creates(registry: ToolRegistry, root: Path) -> None:
    """Append creates a missing file and then adds to its end."""
    for chunk in ("one,", "two"):
        await call(
            registry, root, "write_file", path="log.txt", text=chunk, mode="WRITE_MODE_APPEND"
        )
    assert (root / "log.txt").read_text() == "one,two"


async def test_append_cannot_grow_a_file_past_the_file_size_limit(
    registry: ToolRegistry, root: Path
) -> None:
    """Appending that would pass limits.file_size_bytes is refused and writes nothing."""
    with pytest.raises(PolicyDenied):
        await call(
            registry,
            root,
            "write_file",
            {"file_size_bytes": 104},
            path="digits.bin",
            text="12345",
            mode="WRITE_MODE_APPEND",
        )
    assert (root / "digits.bin").read_bytes() == DIGITS


async def test_data_is_base64_and_written_verbatim(registry: ToolRegistry, root: Path) -> None:
    """data carries raw bytes as base64; they land unchanged."""
    raw = bytes(range(256))
    data = base64.b64encode(raw).decode()
    result = await call(registry, root, "write_file", path="raw.bin", data=data)
    assert (root / "raw.bin").read_bytes() == raw
    assert result.payload == {"bytes_written": 256}


async def test_bad_base64_names_the_data_field(registry: ToolRegistry, root: Path) -> None:
    """Undecodable data is an invalid argument naming args.data."""
    with pytest.raises(InvalidArgument) as info:
        await call(registry, root, "write_file", path="raw.bin", data="not base64!")
    assert info.value.violations[0].field == "args.data"
    assert not (root / "raw.bin").exists()


async def test_write_size_cap_refuses_and_writes_nothing(
    registry: ToolRegistry, root: Path
) -> None:
    """Content over max_write_bytes is refused before anything is written."""
    with pytest.raises(PolicyDenied, match="write limit"):
        await call(
            registry, root, "write_file", {"max_write_bytes": 10}, path="big.txt", text="x" * 11
        )
    assert not (root / "big.txt").exists()
    assert leftovers(root) == []


async def test_make_parents_creates_missing_directories(registry: ToolRegistry, root: Path) -> None:
    """Without make_parents a missing parent is NOT_FOUND; with it the directories appear."""
    with pytest.raises(ToolFailure) as info:
        await call(registry, root, "write_file", path="x/y/z.txt", text="z")
    assert info.value.code == "NOT_FOUND"
    await call(registry, root, "write_file", path="x/y/z.txt", text="z", make_parents=True)
    assert (root / "x" / "y" / "z.txt").read_text() == "z"


def build_tree(root: Path) -> None:
    """root/t: a/b/c/d.txt, a/a1.txt, e.txt, .env, link -> a."""
    deep = root / "t" / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (deep / "d.txt").write_text("d")
    (root / "t" / "a" / "a1.txt").write_text("a1")
    (root / "t" / "e.txt").write_text("eeee")
    (root / "t" / ".env").write_text("SECRET=1")
    os.symlink("a", root / "t" / "link")


async def test_listing_depth_and_types(registry: ToolRegistry, root: Path) -> None:
    """Non-recursive lists one level; max_depth bounds recursion; links are reported, not walked."""
    build_tree(root)
    flat = await call(registry, root, "list_directory", path="t")
    assert flat.output == b"t/a\nt/e.txt\nt/link\n"
    entries = {e["path"]: (e["type"], e["size"]) for e in flat.payload["entries"]}  # type: ignore[index]
    assert entries["t/e.txt"] == ("file", 4)
    assert entries["t/link"][0] == "symlink"
    assert entries["t/a"][0] == "dir"
    two = await call(registry, root, "list_directory", path="t", recursive=True, max_depth=2)
    assert two.output.decode().split() == ["t/a", "t/a/a1.txt", "t/a/b", "t/e.txt", "t/link"]
    full = await call(registry, root, "list_directory", path="t", recursive=True)
    assert b"t/a/b/c/d.txt\n" in full.output
    assert not full.truncated


async def test_listing_entry_cap_truncates(registry: ToolRegistry, root: Path) -> None:
    """max_entries (and the policy cap) stop the walk and set truncated."""
    build_tree(root)
    capped = await call(registry, root, "list_directory", path="t", recursive=True, max_entries=3)
    assert capped.output.decode().split() == ["t/a", "t/a/a1.txt", "t/a/b"]
    assert capped.truncated
    assert capped.payload["truncated"]  # type: ignore[index]
    policy = await call(
        registry,
        root,
        "list_directory",
        {"max_list_entries": 2},
        path="t",
        recursive=True,
        max_entries=50,
    )
    assert len(policy.payload["entries"]) == 2  # type: ignore[index]
    exact = await call(registry, root, "list_directory", path="t", max_entries=3)
    assert not exact.truncated


async def test_listing_a_file_fails(registry: ToolRegistry, root: Path) -> None:
    """Listing a regular file is NOT_A_DIRECTORY."""
    with pytest.raises(ToolFailure) as info:
        await call(registry, root, "list_directory", path="digits.bin")
    assert info.value.reason == "NOT_A_DIRECTORY"


async def test_delete_file_and_tree(registry: ToolRegistry, root: Path) -> None:
    """Files go with a plain delete; trees only recursively under a permissive policy."""
    await call(registry, root, "delete_file", path="digits.bin")
    assert not (root / "digits.bin").exists()
    with pytest.raises(ToolFailure) as missing:
        await call(registry, root, "delete_file", path="digits.bin")
    assert missing.value.reason == "FILE_NOT_FOUND"
    deep = root / "tree" / "a" / "b"
    deep.mkdir(parents=True)
    (deep / "f").write_text("f")
    who = replace(principal_for(root), allow_recursive_delete=True)
    tool = registry.get("delete_file")
    args = registry.validate("delete_file", {"path": "tree", "recursive": True})
    result = await tool.run(args, ToolContext(who, "t"))
    assert result.payload == {"deleted": 4}
    assert not (root / "tree").exists()


@pytest.mark.parametrize(
    ("tool", "args", "field"),
    [
        ("read_file", {}, "args.path"),
        ("read_file", {"path": "a", "offset": -1}, "args.offset"),
        ("read_file", {"path": "a", "limit": "10"}, "args.limit"),
        ("read_file", {"path": "a", "bogus": 1}, "args.bogus"),
        ("read_file", {"path": 7}, "args.path"),
        ("read_file", {"path": ""}, "args.path"),
        ("write_file", {"path": "a", "mode": "WRITE_MODE_SIDEWAYS"}, "args.mode"),
        ("write_file", {"path": "a", "text": "x", "data": "eA=="}, "args"),
        ("list_directory", {"max_depth": -2}, "args.max_depth"),
        ("list_directory", {"recursive": "yes"}, "args.recursive"),
        ("delete_file", {"path": "a", "recursive": 1}, "args.recursive"),
    ],
)
def test_schema_errors_name_the_field(
    registry: ToolRegistry, tool: str, args: dict[str, Any], field: str
) -> None:
    """Bad arguments are TOOL_ARGUMENTS_INVALID with a violation naming the field."""
    with pytest.raises(InvalidArgument) as info:
        registry.validate(tool, args)
    assert info.value.reason == "TOOL_ARGUMENTS_INVALID"
    assert [v.field for v in info.value.violations] == [field]


def test_schemas_fill_defaults_and_describe_every_field(registry: ToolRegistry) -> None:
    """Validation fills defaults; each schema forbids unknown fields and documents its own."""
    assert registry.validate("read_file", {"path": "a"}) == {"path": "a", "offset": 0, "limit": 0}
    assert registry.validate("write_file", {"path": "a"})["mode"] == "WRITE_MODE_OVERWRITE"
    assert registry.validate("list_directory", {}) == {
        "path": "",
        "recursive": False,
        "max_depth": 0,
        "max_entries": 0,
    }
    for tool in registry.tools():
        assert isinstance(tool, FileTool)
        assert tool.schema["additionalProperties"] is False
        assert all("description" in p for p in tool.schema["properties"].values())
