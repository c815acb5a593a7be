"""A venv of its own for a peer whose pins clash with clawq's (arq needs redis<6)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from benchmarks.services import REPO

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "clawq-bench"


async def _run(*argv: str, env: dict[str, str] | None = None) -> bytes:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(argv[0]).name} failed: {err.decode(errors='replace')[-300:]}")
    return out


async def venv_python(name: str, *requirements: str) -> Path:
    """The python of a cached venv with requirements installed (made on first use)."""
    home = CACHE / f"{name}-venv"
    python = home / "bin" / "python"
    marker = home / ".installed"
    wanted = "\n".join(requirements)
    if not marker.exists() or marker.read_text() != wanted:
        await _run(sys.executable, "-m", "venv", "--clear", str(home))
        await _run(str(python), "-m", "pip", "install", "--quiet", *requirements)
        marker.write_text(wanted)
    return python


async def run_arq(redis_url: str, count: int, repeats: int) -> dict[str, float]:
    """arq's enqueue and end-to-end medians, measured in its own venv."""
    python = await venv_python("arq", "arq>=0.26", "hiredis")
    env = {**os.environ, "PYTHONPATH": str(REPO), "CLAWQ_BENCH_REDIS_URL": redis_url}
    argv = [str(python), "-m", "benchmarks.peers.arq_peer", str(count), str(repeats)]
    out = await _run(*argv, env=env)
    result: dict[str, float] = json.loads(out.splitlines()[-1])
    return result
