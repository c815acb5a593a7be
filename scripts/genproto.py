"""Generates the Python stubs (messages, gRPC, .pyi) of protos/clawq/v1 into a folder."""

from __future__ import annotations

import os
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"


def generate(out: Path) -> None:
    """Write clawq/v1/*_pb2.py, *_pb2_grpc.py and *.pyi under out."""
    googleapis = Path(str(resources.files("google") / ".."))
    grpc_tools_include = Path(str(resources.files("grpc_tools") / "_proto"))
    sources = sorted(str(p.relative_to(PROTOS)) for p in (PROTOS / "clawq" / "v1").glob("*.proto"))
    out.mkdir(parents=True, exist_ok=True)
    # protoc finds the mypy plugins on PATH; they live beside this interpreter.
    bindir = str(Path(sys.executable).parent)
    os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{googleapis}",
        f"-I{grpc_tools_include}",
        f"--python_out={out}",
        f"--mypy_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_grpc_out={out}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    (out / "clawq" / "v1" / "__init__.py").write_text('"""Generated from protos/clawq/v1."""\n')


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "client")
