"""A tiny run of clawq's own benchmarks, so a benchmark never silently rots."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from benchmarks.__main__ import groups
from benchmarks.harness import Figure, Target
from tests.processes import REPO, child_env


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_quick_run_measures_every_figure(tmp_path: Path) -> None:
    """`python -m benchmarks --quick` completes and writes every figure with a positive value."""
    out = tmp_path / "latest.json"
    path = os.pathsep.join(str(p) for p in (REPO, REPO / "client", REPO / "server"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks", "--quick", "--out", str(out),
        env=child_env(PYTHONPATH=path), cwd=str(REPO),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 280)
    assert proc.returncode == 0, stderr.decode(errors="replace")[-3000:]
    report = json.loads(out.read_text())
    figures = {f["name"]: f for f in report["figures"]}
    expected = [name for group in groups(quick=True) for name in group.names]
    assert sorted(figures) == sorted(expected)
    for name, figure in figures.items():
        assert figure["status"] == "ok", f"{name}: {figure['note']}"
        assert figure["value"] > 0, name
    assert b"| figure | clawq | baseline | ratio | target | met |" in stdout


def test_targets_are_judged_by_ratio() -> None:
    """A figure's ratio is value over baseline, and met compares it with the target's bound."""
    faster = Figure.measured("f", 30.0, "tasks/s", baseline=("b", 10.0), target=Target(2.0))
    slower = Figure.measured(
        "s", 3.0, "ms", baseline=("b", 2.0), target=Target(1.3, at_least=False)
    )
    assert (faster.ratio, faster.met) == (3.0, True)
    assert (slower.ratio, slower.met) == (1.5, False)
    assert Figure.measured("i", 1.0, "ms").met is None
