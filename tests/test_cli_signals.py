"""A learnact process ended by SIGTERM, SIGHUP or Ctrl-C (once or repeatedly) leaves no sandbox container,
no planner folder and no traceback behind."""

from __future__ import annotations

import glob
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from llm_server import Answer, ScriptedServer

from learnact.sandbox.config import CONTAINER_LABEL
from learnact.sandbox.docker_backend import connect


@pytest.mark.usefixtures("sandbox_image")
def test_sigterm_during_an_execution_removes_the_container(tmp_path: Path) -> None:
    program = tmp_path / "spin.py"
    program.write_text("while True:\n    pass\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "learnact.engine.commands.cli", "sandbox", "exec", str(program), "--timeout", "60"],
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


def process_tree(root: int) -> set[int]:
    """``root`` and its descendants now (the worker processes of an eval on processes)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(parent, []).append(int(entry.name))
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo.extend(children.get(pid, []))
    return tree


def containers_of(api, pids: set[int], all: bool = False) -> list[dict]:
    return [c for pid in sorted(pids) for c in api.containers(all=all, filters={"label": f"{CONTAINER_LABEL}={pid}"})]


@pytest.mark.usefixtures("sandbox_image")
@pytest.mark.parametrize("executor", ["threads", "processes"])
@pytest.mark.parametrize(
    "signals",
    [
        (signal.SIGINT, signal.SIGINT),  # a double Ctrl-C: the second waits for the clean-up
        (signal.SIGHUP,),  # the terminal closed: as SIGTERM
        (signal.SIGTERM, signal.SIGHUP, signal.SIGINT),
    ],
)
def test_stop_signals_during_an_eval_leave_no_container_folder_or_traceback(
    tmp_path: Path, signals: tuple[signal.Signals, ...], executor: str
) -> None:
    # Signals that arrive together are handled in number order: any of them may be the first. Sent to the
    # driver only, as `kill` would: a terminal's Ctrl-C reaches the workers too, which ignore it.
    codes = {130 if number == signal.SIGINT else 128 + number for number in signals}
    process = subprocess.Popen(
        [sys.executable, "-m", "learnact.engine.commands.cli", "eval", "--env", "pddl/barman", "--workers", "2",
         "--executor", executor, "--out", str(tmp_path / "run")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    api = connect()
    pids = {process.pid}
    try:
        deadline = time.monotonic() + 60
        while len(containers_of(api, pids)) < 2:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the sandbox containers never started"
            time.sleep(0.05)
            pids |= process_tree(process.pid)
        time.sleep(0.5)  # episodes are running
        pids |= process_tree(process.pid)
        for number in signals:
            process.send_signal(number)
            time.sleep(0.05)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode in codes, stderr
        assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
        assert containers_of(api, pids, all=True) == []
        for pid in pids:
            assert glob.glob(f"{tempfile.gettempdir()}/learnact-fd-{pid}-*") == []
    finally:
        process.kill()
        process.wait()
        for container in containers_of(api, pids, all=True):
            api.remove_container(container["Id"], force=True)
        api.close()


@pytest.mark.usefixtures("sandbox_image")
@pytest.mark.parametrize("executor", ["threads", "processes"])
@pytest.mark.parametrize(
    ("number", "says"),
    [
        (signal.SIGINT, "interrupted: finished episodes are kept in"),
        (signal.SIGTERM, "stopped by SIGTERM: finished episodes are kept in"),
    ],
)
def test_a_stop_signal_does_not_wait_for_a_model_that_never_answers(
    tmp_path: Path, number: signal.Signals, says: str, executor: str
) -> None:
    with ScriptedServer(responder=lambda body: Answer("too late", delay_s=600)) as server:
        process = subprocess.Popen(
            [sys.executable, "-m", "learnact.engine.commands.cli", "eval", "--env", "pddl/blockworld",
             "--method", "act", "--tasks", "0-1", "--seeds", "1", "--workers", "2", "--model", "m",
             "--base-url", server.base_url,
             "--no-cache", "--executor", executor, "--out", str(tmp_path / "run")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 90
            while len(server.received) < 2:  # both episodes are waiting on the model
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "the episodes never asked the model"
                time.sleep(0.05)
            process.send_signal(number)
            stopped = time.monotonic()
            _, stderr = process.communicate(timeout=60)
            took = time.monotonic() - stopped
        finally:
            process.kill()
            process.wait()
    assert process.returncode == (130 if number == signal.SIGINT else 128 + number), stderr
    assert took < 15, f"{took:.1f} s after the signal: {stderr}"
    assert says in stderr and "run the same command to resume" in stderr
    assert "model calls were abandoned" in stderr and "Traceback" not in stderr
