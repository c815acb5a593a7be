"""The container image, built and run with podman: health, a host client, non-root, clean stop."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

import clawq

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts" / "container"
BASE = "localhost/bookworm-py:local"
UID = 10001
STOP_GRACE_S = 10

pytestmark = [
    pytest.mark.slow,
    # The first run builds the base image with debootstrap (~60 s) before the clawq image.
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        shutil.which("podman") is None,
        reason="podman is not installed (apt-get install podman buildah runc uidmap "
        "fuse-overlayfs slirp4netns debootstrap)",
    ),
]


def _podman_env() -> dict[str, str]:
    """The environment that keeps podman's images and containers under .containers/."""
    out = subprocess.run(
        [SCRIPTS / "podman-env.sh"], check=True, capture_output=True, text=True
    ).stdout
    env = dict(os.environ)
    for line in out.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value.strip("'")
    return env


@dataclass(frozen=True)
class Podman:
    """podman run with the project's storage and runtime configuration."""

    binary: str
    env: Mapping[str, str]

    def call(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a podman command; the caller judges its exit status."""
        return subprocess.run(
            [self.binary, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def run(self, *args: str, check: bool = True) -> str:
        """Run a podman command and return its stdout; raise on failure when check."""
        done = self.call(*args)
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed: {done.stderr[-2000:]}")
        return done.stdout

    def ok(self, *args: str) -> bool:
        """True when the podman command exits 0."""
        return self.call(*args).returncode == 0

    def logs(self, name: str) -> str:
        """A container's output; clawq logs to stderr, which podman logs replays on stderr."""
        done = self.call("logs", name)
        return done.stdout + done.stderr


@pytest.fixture(scope="module")
def podman() -> Podman:
    """podman configured by scripts/container/podman-env.sh."""
    return Podman(shutil.which("podman") or "podman", _podman_env())


@pytest.fixture(scope="module")
def image(podman: Podman) -> Iterator[str]:
    """The clawq image built by scripts/container/build-image.sh; removed afterwards.

    The base image is kept: it is cached by tag and takes a minute to make.
    """
    if not podman.ok("image", "exists", BASE) and shutil.which("debootstrap") is None:
        pytest.skip(f"no {BASE} image and no debootstrap to make it (apt-get install debootstrap)")
    tag = f"localhost/clawq-test:{uuid.uuid4().hex[:12]}"
    build = subprocess.run(
        [SCRIPTS / "build-image.sh", tag],
        env={**podman.env, "BASE": ""},
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    yield tag
    podman.run("rmi", "--force", tag)
    # The build's cache layers (the install stage among them) are left untagged.
    podman.run("image", "prune", "--force")


@dataclass(frozen=True)
class Container:
    """A running clawq container and the host folders bound into it."""

    name: str
    port: int
    data: Path
    workspace: Path


def _wait_healthy(podman: Podman, name: str, deadline_s: float = 30) -> None:
    """Run the image's HEALTHCHECK until it passes; fail if the container dies first."""
    deadline = time.monotonic() + deadline_s
    while not podman.ok("healthcheck", "run", name):
        state = podman.run("inspect", "--format", "{{.State.Status}}", name).strip()
        if state != "running":
            raise AssertionError(f"container {state}: {podman.logs(name)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"not healthy in {deadline_s} s: {podman.logs(name)}")
        time.sleep(0.2)


@pytest.fixture
def container(podman: Podman, image: str, tmp_path: Path) -> Iterator[Container]:
    """The image's default command, data and workspace bound from tmp_path, port on loopback."""
    data, workspace = tmp_path / "data", tmp_path / "workspace"
    data.mkdir()
    workspace.mkdir()
    (workspace / "hello.txt").write_text("hello from the host\n")
    name = f"clawq-test-{uuid.uuid4().hex[:12]}"
    # :U hands the host folders to the container's uid 10001, as a deployment would chown.
    podman.run(
        "run", "--detach", "--pull=never", "--name", name,
        "--publish", "127.0.0.1::50051",
        "--volume", f"{data}:/srv/clawq/data:U",
        "--volume", f"{workspace}:/srv/clawq/workspace:U",
        image,
    )  # fmt: skip
    try:
        _wait_healthy(podman, name)
        port = int(podman.run("port", name, "50051/tcp").strip().rsplit(":", 1)[1])
        yield Container(name, port, data, workspace)
    finally:
        podman.run("rm", "--force", "--volumes", name, check=False)


def test_health_probe_reports_serving(podman: Podman, container: Container) -> None:
    """The health script inside the container prints SERVING for the running server."""
    out = podman.run("exec", container.name, "python", "/opt/clawq/healthcheck.py")
    assert out.strip() == "SERVING"


def test_host_client_lists_the_bound_workspace(container: Container) -> None:
    """A host client reaches the published port and sees the host's workspace files."""
    with clawq.Client(f"127.0.0.1:{container.port}") as client:
        result = client.execute("list_directory", path=".")
    assert result.payload is not None
    entries = result.payload["entries"]
    assert [e["path"] for e in entries] == ["hello.txt"]
    assert (container.data / "clawq.db").is_file()
    audit = container.data / "audit.jsonl"
    deadline = time.monotonic() + 10  # audit records are written in groups, moments later
    while not (audit.exists() and audit.stat().st_size > 0):
        assert time.monotonic() < deadline, "no audit record was written"
        time.sleep(0.05)


def test_server_runs_as_the_unprivileged_user(podman: Podman, container: Container) -> None:
    """The server process (PID 1) and exec'd commands run as uid 10001, never root."""
    assert podman.run("exec", container.name, "id", "-u").strip() == str(UID)
    status = podman.run("exec", container.name, "cat", "/proc/1/status")
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    assert uids == [str(UID)] * 4


def test_stop_ends_the_server_cleanly_and_quickly(podman: Podman, container: Container) -> None:
    """podman stop (SIGTERM to PID 1) ends the server with status 0 well inside the grace."""
    started = time.monotonic()
    podman.run("stop", "--time", str(STOP_GRACE_S), container.name)
    elapsed = time.monotonic() - started
    state = json.loads(podman.run("inspect", "--format", "{{json .State}}", container.name))
    assert state["ExitCode"] == 0, podman.logs(container.name)
    assert elapsed < STOP_GRACE_S / 2
    assert "clawq stopping" in podman.logs(container.name)


def test_image_declares_health_user_port_and_volumes(podman: Podman, image: str) -> None:
    """The image carries its HEALTHCHECK, non-root user, port and data volumes."""
    config = json.loads(podman.run("image", "inspect", "--format", "{{json .Config}}", image))
    health = json.loads(podman.run("image", "inspect", "--format", "{{json .HealthCheck}}", image))
    assert config["User"] == f"{UID}:{UID}"
    assert health["Test"] == ["CMD", "/opt/clawq/bin/python", "/opt/clawq/healthcheck.py"]
    assert "50051/tcp" in config["ExposedPorts"]
    assert set(config["Volumes"]) == {"/srv/clawq/data", "/srv/clawq/workspace"}
    assert config["Entrypoint"] == ["clawq"]
