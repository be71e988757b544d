"""A learnact process ended by SIGTERM leaves no sandbox container behind."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from learnact.sandbox.config import CONTAINER_LABEL
from learnact.sandbox.docker_backend import connect


@pytest.mark.usefixtures("sandbox_image")
def test_sigterm_during_an_execution_removes_the_container(tmp_path: Path) -> None:
    program = tmp_path / "spin.py"
    program.write_text("while True:\n    pass\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "learnact.engine.cli", "sandbox", "exec", str(program), "--timeout", "60"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    api = connect()
    mine = {"label": f"{CONTAINER_LABEL}={process.pid}"}
    try:
        deadline = time.monotonic() + 60
        while not api.containers(filters=mine):
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the sandbox container never started"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 128 + signal.SIGTERM
        assert api.containers(all=True, filters=mine) == []
    finally:
        process.kill()
        for container in api.containers(all=True, filters=mine):
            api.remove_container(container["Id"], force=True)
        api.close()
