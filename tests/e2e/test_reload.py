"""Configuration reload: on SIGHUP, on file change and by RPC; an invalid file changes nothing."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

import clawq
from clawq_server.config import hash_token
from tests.processes import start_clawq

CONFIG = """
[server]
backend = "sqlite://{db}"
workers = 1

[[principals]]
name = "alice"
token_sha256 = ["{alice}"]
roots = [{{ path = "ws" }}]
admin = true
"""
BOB = """
[[principals]]
name = "bob"
token_sha256 = ["{bob}"]
roots = [{{ path = "ws" }}]
"""


def _write(path: Path, *, with_bob: bool) -> None:
    text = CONFIG.format(db=path.parent / "q.db", alice=hash_token("alice-token"))
    if with_bob:
        text += BOB.format(bob=hash_token("bob-token"))
    path.write_text(text)


async def _accepted(target: str, token: str) -> bool:
    async with clawq.AsyncClient(target, token=token) as client:
        try:
            await client.submit("list_directory", path=".")
        except clawq.Unauthenticated:
            return False
        return True


async def _eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("trigger", ["sighup", "file-change"])
async def test_new_principal_is_accepted_after_reload(tmp_path: Path, trigger: str) -> None:
    """A principal added to the file is accepted after SIGHUP, or after the file changes."""
    config = tmp_path / "clawq.toml"
    (tmp_path / "ws").mkdir()
    _write(config, with_bob=False)
    server = await start_clawq("serve", "--listen", "127.0.0.1:0", "--config", str(config))
    try:
        assert await _accepted(server.target, "alice-token")
        assert not await _accepted(server.target, "bob-token")
        _write(config, with_bob=True)
        if trigger == "sighup":
            server.proc.send_signal(signal.SIGHUP)
        await _eventually(lambda: _accepted(server.target, "bob-token"))
        assert await _accepted(server.target, "alice-token")
    finally:
        assert await server.stop() == 0


async def test_invalid_file_is_refused_and_the_old_config_kept(tmp_path: Path) -> None:
    """ReloadConfig of a broken file reports why and leaves the running config in force."""
    config = tmp_path / "clawq.toml"
    (tmp_path / "ws").mkdir()
    _write(config, with_bob=False)
    server = await start_clawq("serve", "--listen", "127.0.0.1:0", "--config", str(config))
    try:
        for broken in ("[[principals]]\nname = 'x'\nroots = [\n", "server = []\n"):
            config.write_text(broken)
            async with clawq.AsyncClient(server.target, token="alice-token") as client:
                outcome = await client.reload_config()
            assert not outcome.reloaded
            assert "refused" in outcome.message
            assert await _accepted(server.target, "alice-token")
        # The file watcher outlived the broken files: a valid edit still takes effect.
        _write(config, with_bob=True)
        await _eventually(lambda: _accepted(server.target, "bob-token"))
    finally:
        assert await server.stop() == 0


async def test_only_an_admin_may_reload_or_read_across_principals(tmp_path: Path) -> None:
    """AdminService beyond ListTools spans principals: a principal without admin = true gets
    PERMISSION_DENIED for each of those calls, and may still list its tools."""
    config = tmp_path / "clawq.toml"
    (tmp_path / "ws").mkdir()
    _write(config, with_bob=True)
    server = await start_clawq("serve", "--listen", "127.0.0.1:0", "--config", str(config))
    try:
        async with clawq.AsyncClient(server.target, token="bob-token") as bob:
            assert await bob.tools()
            for call in (
                bob.reload_config,
                bob.queue_stats,
                bob.cache_stats,
                bob.cache_clear,
                bob.requeue_dead,
                lambda: bob.cache_invalidate(pattern="*"),
            ):
                with pytest.raises(clawq.PermissionDenied):
                    await call()
            with pytest.raises(clawq.PermissionDenied):
                [page async for page in bob.dead_letters()]
        async with clawq.AsyncClient(server.target, token="alice-token") as alice:
            assert (await alice.queue_stats()).dead == 0
    finally:
        assert await server.stop() == 0
