"""Lints protos/ with buf (STANDARD + COMMENTS) offline, google/rpc from site-packages."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKSPACE = """version: v2
modules:
  - path: .
    excludes: [deps]
    lint:
      use: [STANDARD, COMMENTS]
  - path: deps
    lint:
      ignore: [deps/google]
"""


def lint() -> int:
    """Run buf lint; its exit status (0 when clean)."""
    buf = shutil.which("buf") or str(Path(sys.executable).parent / "buf")
    google_rpc = Path(str(resources.files("google") / "rpc"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shutil.copytree(ROOT / "protos" / "clawq", work / "clawq")
        shutil.copytree(google_rpc, work / "deps" / "google" / "rpc")
        (work / "buf.yaml").write_text(WORKSPACE)
        return subprocess.run([buf, "lint"], cwd=work, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(lint())
