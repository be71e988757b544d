"""Shared fixtures: a Docker engine (required under CI=true) and the no-leftover-container check."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import pytest

from learnact.sandbox.config import CONTAINER_LABEL


@lru_cache(maxsize=1)
def _engine_problem() -> str | None:
    """None when a Docker engine answers, else why not (asked once per test run)."""
    from learnact.sandbox.docker_backend import connect
    from learnact.sandbox.transport import SandboxUnavailable

    try:
        connect(timeout_s=5.0).close()
    except SandboxUnavailable as exc:
        return str(exc)
    return None


@pytest.fixture(scope="session", autouse=True)
def stop_signals_delivered() -> Iterator[None]:
    """The tests send SIGINT and SIGHUP to the commands they start, which inherit an ignored disposition from a
    suite started in the background (bash ignores SIGINT in background jobs) or under nohup (SIGHUP); the CLI then
    keeps that immunity on purpose, and those tests would see a command that ignores them. The suite's children
    get the defaults, whatever started the suite; the suite's own dispositions are restored at its end."""
    before = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGHUP)}
    if before[signal.SIGINT] == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if before[signal.SIGHUP] == signal.SIG_IGN:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
    yield
    for number, handler in before.items():
        signal.signal(number, handler)


@pytest.fixture(scope="session")
def docker_available() -> None:
    """Skips the test without a Docker engine; under CI=true that is a failure instead."""
    problem = _engine_problem()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {problem}")
    pytest.skip(problem)


@pytest.fixture(scope="session")
def bwrap_root(sandbox_image: str) -> Path:
    """bubblewrap and the root file system the image build leaves for it. Skips without bubblewrap; under
    CI=true (where the set-up installs it) that is a failure instead."""
    import shutil

    from learnact.images.common import rootfs_dir

    if shutil.which("bwrap") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but bubblewrap (bwrap) is not installed")
        pytest.skip("bubblewrap (bwrap) is not installed")
    return rootfs_dir()


@pytest.fixture(scope="session")
def alfworld_data() -> Path:
    """The real ALFWorld games: $ALFWORLD_DATA, else ../shared/data/alfworld beside the checkout.
    Skips without them; under CI=true that is a failure instead."""
    given = os.environ.get("ALFWORLD_DATA")
    path = Path(given) if given else Path(__file__).resolve().parents[2] / "shared/data/alfworld"
    if not (path / "json_2.1.1").is_dir():
        message = f"ALFWorld games not found at {path} (set $ALFWORLD_DATA)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def sandbox_image(docker_available: None) -> str:
    """The sandbox image, rebuilt when the runner or Dockerfile changed (kept when up to date)."""
    from learnact.images import build_images
    from learnact.sandbox.config import SANDBOX_IMAGE

    build_images(log=lambda _line: None)
    return SANDBOX_IMAGE


@pytest.fixture(autouse=True)
def no_sandbox_container_left() -> Iterator[None]:
    """After every test, no container started by this test process may remain."""
    yield
    if _engine_problem() is not None:
        return
    from learnact.sandbox.docker_backend import connect

    api = connect()
    try:
        left = api.containers(all=True, filters={"label": f"{CONTAINER_LABEL}={os.getpid()}"})
        for container in left:
            api.remove_container(container["Id"], force=True)
    finally:
        api.close()
    assert not left, f"{len(left)} sandbox container(s) left behind: {[c['Id'][:12] for c in left]}"
