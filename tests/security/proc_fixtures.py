"""Fixtures for the process tests (registered with ``pytest_plugins``): workspaces and runners."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from clawq_server.tools.process import ProcessRunner
from tests.security.helpers_proc import MODES, PROC_SECRET, ProcWorkspace, wait_no_survivors


@pytest.fixture
def proc_ws(tmp_path: Path) -> Iterator[ProcWorkspace]:
    """A workspace for one test; afterwards no process tagged by it may be alive."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text(PROC_SECRET)
    (root / "notes.txt").write_text("alpha\nbeta\ngamma\n")
    workspace = ProcWorkspace(root, outside, uuid.uuid4().hex)
    yield workspace
    assert wait_no_survivors(workspace.marker) == []


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    """Each sandbox mode in turn."""
    value: str = request.param
    return value


@pytest.fixture
def runner(mode: str) -> ProcessRunner:
    """A runner in the current sandbox mode."""
    return ProcessRunner(mode)
