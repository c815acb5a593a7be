"""A Node client generated from the .proto contracts executes a call against a real server."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest

from tests.conftest import Served
from tests.processes import REPO

pytestmark = pytest.mark.slow
EXAMPLE = REPO / "examples" / "node"


@pytest.fixture(scope="session")
def node_modules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example's dependencies, installed from the npm registry into a temp folder."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are required for the interop test")
    folder = tmp_path_factory.mktemp("node")
    shutil.copy(EXAMPLE / "package.json", folder)
    shutil.copy(EXAMPLE / "execute.js", folder)
    npm = shutil.which("npm")
    assert npm is not None
    subprocess.run(
        [npm, "install", "--silent", "--no-audit", "--no-fund"], cwd=folder, check=True, timeout=300
    )
    return folder


async def test_node_executes_read_file(served: Served, node_modules: Path) -> None:
    """execute.js prints the file's content, read through clawq."""
    (served.root / "notes.txt").write_text("hello from clawq")
    googleapis = Path(str(resources.files("google") / ".."))
    script = node_modules / "execute.js"
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(script),
        served.target,
        "notes.txt",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "GOOGLEAPIS_PROTOS": str(googleapis),
            "CLAWQ_PROTOS": str(REPO / "protos"),
        },
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert out.decode() == "hello from clawq"
