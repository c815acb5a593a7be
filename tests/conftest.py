"""Fixtures shared by the whole suite: a real clawq server on an ephemeral loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from clawq_server.app import App, build_app
from clawq_server.config import ANONYMOUS, Config, default_principal


@dataclass(frozen=True)
class Served:
    """A running server as tests see it."""

    target: str
    root: Path
    db: Path
    app: App


ServerFactory = Callable[..., AbstractAsyncContextManager[Served]]


def test_config(tmp_path: Path, **overrides: Any) -> Config:
    """A config for one test: its own SQLite file, workspace root and audit log."""
    root = tmp_path / "workspace"
    root.mkdir(exist_ok=True)
    principal = replace(default_principal([root]), **overrides.pop("principal_overrides", {}))
    base = Config(
        listen="127.0.0.1:0",
        backend_url=f"sqlite://{tmp_path / 'clawq.db'}",
        workers=4,
        lease_s=5.0,
        principals={ANONYMOUS: principal},
        audit_path=tmp_path / "audit.jsonl",
        grace_s=1.0,
    )
    return replace(base, **overrides)


@pytest.fixture
def server_factory(tmp_path: Path) -> ServerFactory:
    """Starts servers with per-test overrides of the config."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Served]:
        config = test_config(tmp_path, **overrides)
        async with build_app(config) as app:
            yield Served(
                target=f"127.0.0.1:{app.port}",
                root=tmp_path / "workspace",
                db=Path(config.backend_url.removeprefix("sqlite://")),
                app=app,
            )

    return start


@pytest.fixture
async def served(server_factory: ServerFactory) -> AsyncIterator[Served]:
    """A clawq server with SQLite, in-process workers and one workspace root."""
    async with server_factory() as server:
        yield server
