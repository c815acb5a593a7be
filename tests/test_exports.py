"""The public surface of `import clawq` is a pinned, curated list."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import clawq

PINNED = [
    "TASK_STATES",
    "TERMINAL_STATES",
    "Aborted",
    "Ack",
    "AlreadyExists",
    "AsyncClient",
    "CacheStats",
    "Call",
    "Client",
    "ConfigReload",
    "DeadlineExceeded",
    "Error",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "QueueStats",
    "ResourceExhausted",
    "Result",
    "Task",
    "TaskError",
    "TaskFailed",
    "ToolCacheStats",
    "ToolInfo",
    "Unauthenticated",
    "Unavailable",
]


def test_all_is_pinned() -> None:
    """__all__ changes only together with this list."""
    assert sorted(clawq.__all__) == sorted(PINNED)


def test_every_export_exists() -> None:
    """Every name in __all__ is importable from clawq."""
    for name in clawq.__all__:
        assert getattr(clawq, name) is not None, name


def test_errors_share_one_base() -> None:
    """Every RPC error is a clawq.Error; TaskFailed is not an RPC error."""
    for name in PINNED:
        value = getattr(clawq, name)
        if (
            isinstance(value, type)
            and issubclass(value, Exception)
            and value is not clawq.TaskFailed
        ):
            assert issubclass(value, clawq.Error), name
    assert not issubclass(clawq.TaskFailed, clawq.Error)


def test_client_never_imports_the_server() -> None:
    """`import clawq` loads nothing from clawq_server."""
    code = "import sys, clawq, clawq.cli; print([m for m in sys.modules if 'clawq_server' in m])"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(Path(__file__).parents[1] / "client")},
    )
    assert out.stdout.strip() == "[]"
