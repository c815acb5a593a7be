"""The four built-in file tools, confined to a principal's roots (see policy/paths.py)."""

from __future__ import annotations

from clawq_server.tools.files_base import FileTool
from clawq_server.tools.files_delete import DeleteFileTool
from clawq_server.tools.files_read import ListDirectoryTool, ReadFileTool
from clawq_server.tools.files_write import WriteFileTool

__all__ = ["DeleteFileTool", "FileTool", "ListDirectoryTool", "ReadFileTool", "WriteFileTool"]


def file_tools() -> list[FileTool]:
    """One instance of each file tool."""
    return [ReadFileTool(), WriteFileTool(), ListDirectoryTool(), DeleteFileTool()]
