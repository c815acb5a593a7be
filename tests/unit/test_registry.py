"""The tool registry: lookup, schema validation, and plugins from real entry points."""

from __future__ import annotations

import logging
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clawq.v1 import task_pb2
from clawq_server.errors import InvalidArgument, NotFound
from clawq_server.model import JsonObject, SideEffect, ToolResult
from clawq_server.policy.principal import Principal
from clawq_server.tools.base import Tool, ToolContext
from clawq_server.tools.files import file_tools
from clawq_server.tools.registry import ToolRegistry
from clawq_server.tools.schema import compile_schema

ECHO_SCHEMA: JsonObject = {
    "type": "object",
    "additionalProperties": False,
    "required": ["text"],
    "properties": {
        "text": {"type": "string"},
        "opts": {
            "type": "object",
            "properties": {"times": {"type": "integer", "minimum": 1, "default": 1}},
        },
    },
}


class EchoTool:
    """A minimal plugin-shaped tool with a nested schema."""

    name = "echo"
    description = "Echo the text back."
    side_effect = SideEffect.READ_ONLY
    cacheable = True

    def __init__(self) -> None:
        self.schema: JsonObject = ECHO_SCHEMA

    async def run(self, args: JsonObject, ctx: ToolContext) -> ToolResult:
        """Echo."""
        return ToolResult(output=str(args["text"]).encode())


def test_get_names_and_tools_are_sorted() -> None:
    """Tools are found by name and listed in name order."""
    registry = ToolRegistry()
    tools: list[Tool] = [EchoTool(), *file_tools()]
    for tool in tools:
        registry.register(tool)
    assert registry.names() == sorted(registry.names())
    assert registry.names()[0] == "delete_file"
    assert [t.name for t in registry.tools()] == registry.names()
    assert registry.get("echo").description == "Echo the text back."
    assert "echo" in registry


def test_unknown_tool_is_not_found() -> None:
    """An unknown name is NotFound with reason TOOL_NOT_FOUND, for get and validate alike."""
    registry = ToolRegistry()
    with pytest.raises(NotFound) as info:
        registry.get("rm_rf")
    assert info.value.reason == "TOOL_NOT_FOUND"
    with pytest.raises(NotFound):
        registry.validate("rm_rf", {})


def test_duplicate_and_malformed_tools_are_refused() -> None:
    """A second tool with a taken name, a bad name or a broken schema is not registered."""
    registry = ToolRegistry()
    registry.register(EchoTool())
    with pytest.raises(ValueError, match="already registered"):
        registry.register(EchoTool())
    bad_name = EchoTool()
    bad_name.name = "Bad Name!"
    with pytest.raises(ValueError, match="must match"):
        registry.register(bad_name)
    bad_schema = EchoTool()
    bad_schema.name = "broken"
    bad_schema.schema = {"type": "object", "properties": {"x": {"type": "nonsense"}}}
    with pytest.raises(ValueError, match="invalid argument schema"):
        registry.register(bad_schema)
    assert registry.names() == ["echo"]


def test_validate_fills_nested_defaults_without_touching_the_input() -> None:
    """Validation returns a normalised copy; the caller's arguments are left as they were."""
    registry = ToolRegistry()
    registry.register(EchoTool())
    args: dict[str, Any] = {"text": "hi", "opts": {}}
    assert registry.validate("echo", args) == {"text": "hi", "opts": {"times": 1}}
    assert args == {"text": "hi", "opts": {}}


def test_nested_violations_name_the_nested_field() -> None:
    """A bad nested value is reported as args.<outer>.<inner>."""
    validate = compile_schema(ECHO_SCHEMA)
    with pytest.raises(InvalidArgument) as info:
        validate({"text": "hi", "opts": {"times": 0}})
    assert [v.field for v in info.value.violations] == ["args.opts.times"]
    assert "bigger than or equal to 1" in info.value.violations[0].description
    with pytest.raises(InvalidArgument) as not_object:
        validate(["text"])  # type: ignore[arg-type]
    assert not_object.value.violations[0].field == "args"


@pytest.mark.parametrize(
    ("tool", "message"),
    [
        ("read_file", task_pb2.ReadFileArgs),
        ("write_file", task_pb2.WriteFileArgs),
        ("list_directory", task_pb2.ListDirectoryArgs),
        ("delete_file", task_pb2.DeleteFileArgs),
    ],
)
def test_file_tool_schemas_match_the_proto_messages(tool: str, message: Any) -> None:
    """Each file tool's schema has exactly the fields of its typed proto message."""
    registry = ToolRegistry()
    for t in file_tools():
        registry.register(t)
    fields = {f.name for f in message.DESCRIPTOR.fields}
    assert set(registry.get(tool).schema["properties"]) == fields


PLUGIN_MODULE = """
from clawq_server.model import SideEffect, ToolResult

class Shout:
    name = "shout"
    description = "Upper-case the text."
    side_effect = SideEffect.READ_ONLY
    cacheable = False
    schema = {"type": "object", "properties": {"text": {"type": "string"}}}

    async def run(self, args, ctx):
        return ToolResult(output=args["text"].upper().encode())

def make_whisper():
    tool = Shout()
    tool.name = "whisper"
    return tool

INSTANCE = make_whisper()
INSTANCE.name = "murmur"

def broken():
    raise RuntimeError("plugin exploded")

def impostor():
    tool = Shout()
    tool.name = "read_file"
    return tool
"""


@pytest.fixture
def plugin_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real installed distribution (dist-info on sys.path) advertising clawq.tools."""
    module = f"clawq_test_plugin_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(PLUGIN_MODULE))
    info = tmp_path / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[clawq.tools]\n"
        f"shout = {module}:Shout\n"
        f"whisper = {module}:make_whisper\n"
        f"murmur = {module}:INSTANCE\n"
        f"broken = {module}:broken\n"
        f"impostor = {module}:impostor\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield module
    sys.modules.pop(module, None)


async def test_entry_points_load_classes_factories_and_instances(
    plugin_dist: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Plugins load from entry points; broken or name-stealing ones are logged and skipped."""
    registry = ToolRegistry()
    for tool in file_tools():
        registry.register(tool)
    with caplog.at_level(logging.ERROR, logger="clawq.tools"):
        added = registry.load_entry_points()
    assert sorted(added) == ["murmur", "shout", "whisper"]
    assert "plugin exploded" in caplog.text
    assert "impostor" in caplog.text
    assert registry.get("read_file").__class__.__name__ == "ReadFileTool"
    shout = registry.get("shout")
    ctx = ToolContext(Principal("p", ()), "t")
    result = await shout.run(registry.validate("shout", {"text": "hey"}), ctx)
    assert result.output == b"HEY"
