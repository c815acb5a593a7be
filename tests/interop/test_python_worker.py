"""The example worker, built on the generated stubs only, serves a plugin tool end to end."""

from __future__ import annotations

import asyncio
import sys

import pytest

import clawq
from tests.conftest import ServerFactory
from tests.processes import REPO, child_env

UPPERCASE = {
    "name": "uppercase",
    "description": "Upper-cases text (served by examples/python_worker.py)",
    "side_effect": "read_only",
    "schema": {
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
        "additionalProperties": False,
    },
}


async def test_example_worker_serves_a_plugin_tool(server_factory: ServerFactory) -> None:
    """Execute of a remote tool is leased, run and completed by the external worker."""
    async with server_factory(remote_tools=(UPPERCASE,)) as served:
        worker = await asyncio.create_subprocess_exec(
            sys.executable,
            str(REPO / "examples" / "python_worker.py"),
            "--target",
            served.target,
            stdout=asyncio.subprocess.PIPE,
            env=child_env(),
        )
        try:
            assert worker.stdout is not None
            assert await asyncio.wait_for(worker.stdout.readline(), 20) == b"worker ready\n"
            async with clawq.AsyncClient(served.target) as client:
                result = await client.execute("uppercase", text="hello", timeout=20)
                assert result.output == "HELLO"
                assert result.payload == {"length": 5}
                with pytest.raises(clawq.InvalidArgument):
                    await client.execute("uppercase", txt="typo")
                tools = {t.name for t in await client.tools()}
                assert "uppercase" in tools
        finally:
            worker.terminate()
            await asyncio.wait_for(worker.wait(), 20)
