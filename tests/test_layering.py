"""Imports flow one way: only the API edge touches grpc/protobuf; nothing imports app.py."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVER = Path(__file__).resolve().parent.parent / "server" / "clawq_server"
CLIENT = Path(__file__).resolve().parent.parent / "client" / "clawq"
WIRE = ("grpc", "google.protobuf", "google.rpc", "grpc_status", "grpc_health", "clawq.v1")
EDGE = {"api", "app.py", "main.py"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _modules(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "v1" not in p.relative_to(root).parts)


@pytest.mark.parametrize("path", _modules(SERVER), ids=lambda p: str(p.relative_to(SERVER)))
def test_domain_code_does_not_import_the_wire(path: Path) -> None:
    """Outside api/ and the composition root, no module imports grpc or protobuf."""
    if path.relative_to(SERVER).parts[0] in EDGE:
        return
    wire = {name for name in _imports(path) if name.startswith(WIRE)}
    assert wire == set()


@pytest.mark.parametrize("path", _modules(SERVER), ids=lambda p: str(p.relative_to(SERVER)))
def test_nothing_imports_the_composition_root(path: Path) -> None:
    """app.py wires everything; only the process entry point imports it."""
    if path.name in {"app.py", "main.py"}:
        return
    assert "clawq_server.app" not in _imports(path)


@pytest.mark.parametrize("path", _modules(CLIENT), ids=lambda p: str(p.relative_to(CLIENT)))
def test_the_client_never_imports_the_server_eagerly(path: Path) -> None:
    """Only the CLI's forwarding of server commands may reach clawq_server, lazily."""
    source = path.read_text()
    top_level = [
        node for node in ast.parse(source).body if isinstance(node, ast.Import | ast.ImportFrom)
    ]
    modules = {
        alias.name if isinstance(node, ast.Import) else (node.module or "")
        for node in top_level
        for alias in node.names
    }
    assert not any(m.startswith("clawq_server") for m in modules)
