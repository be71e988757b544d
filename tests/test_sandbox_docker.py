"""The docker backend, for real, under runc and gVisor (runsc): what only a container promises.

What every backend does (statuses, limits, the protocol, hostile text) is in
test_backend_contract.py; here are the container's own isolation claims and lifecycle. Each test
starts its own Sandbox without a warm pool (so that no container outlives it; the autouse fixture
in conftest.py checks that none is left) and uses short limits: 2 cores.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from learnact.sandbox import ExecutionStatus, Sandbox, SandboxConfig, SandboxUnavailable
from learnact.sandbox.config import CONTAINER_LABEL
from learnact.sandbox.docker_backend import connect, host_config_kwargs, oom_logged

pytestmark = pytest.mark.docker

# Unchecked code finds the runner's protocol channel the way an attacker would: in its memory.
FIND_CHANNEL = "import gc\nchannel = [o for o in gc.get_objects() if type(o).__name__ == 'Channel'][0]\n"


@pytest.fixture(params=["runc", "runsc"])
def runtime(request: pytest.FixtureRequest, sandbox_image: str) -> str:
    return request.param


def make_sandbox(runtime: str, **overrides: object) -> Sandbox:
    settings: dict = dict(runtime=runtime, timeout_s=2.0, cpu_s=1, memory_mb=128, pool_size=0)
    settings.update(overrides)
    return Sandbox(SandboxConfig(**settings))


@pytest.fixture
def unchecked(runtime: str) -> Iterator[Sandbox]:
    with make_sandbox(runtime, check=False) as sandbox:
        yield sandbox


# ---- limits ------------------------------------------------------------------------------------


def test_fork_bomb_is_contained(unchecked: Sandbox) -> None:
    with unchecked.session() as session:
        result = session.execute("import os\nwhile True:\n    os.fork()")
        census = session.execute("import os\nprint(sum(name.isdigit() for name in os.listdir('/proc')))")
    # The program fails to fork further (error), is stopped (timeout), or takes its sandbox down
    # (crashed; gVisor's sentry may give up): never the host, and the next execution is clean.
    assert result.status in (ExecutionStatus.error, ExecutionStatus.timeout, ExecutionStatus.crashed)
    assert census.status is ExecutionStatus.ok
    assert census.stdout == "1\n"  # the runner alone: every forked process is gone


# ---- isolation (check off: the container alone must hold) ---------------------------------------


def test_host_files_are_invisible(unchecked: Sandbox, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host-secret-4242")
    with unchecked.session() as session:
        result = session.execute(f"print(open({str(secret)!r}).read())")
    assert result.status is ExecutionStatus.error
    assert result.error is not None and result.error.type == "FileNotFoundError"
    assert "host-secret-4242" not in result.stdout


def test_what_mountinfo_tells_of_the_host_differs_by_runtime(unchecked: Sandbox, runtime: str) -> None:
    # The README's security table says so: under runc the kernel's mount table names the engine's storage
    # folders on the host (names, not access); gVisor's own kernel shows none of the host's paths.
    with unchecked.session() as session:
        result = session.execute("print(open('/proc/self/mountinfo').read())")
    assert result.status is ExecutionStatus.ok
    host_paths = "/var/lib/docker" in result.stdout
    assert host_paths is (runtime == "runc"), result.stdout


def test_only_tmp_is_writable(unchecked: Sandbox) -> None:
    with unchecked.session() as session:
        root = session.execute("open('/etc/evil', 'w')")
        runner = session.execute("open('/opt/learnact/runner.py', 'a')")
        # Docker mounts a 64 MB tmpfs on /dev/shm and the POSIX message queues on /dev/mqueue.
        shm = session.execute("open('/dev/shm/x', 'w').write('x' * 1000)")
        mqueue = session.execute("open('/dev/mqueue/x', 'w')")
        shared = session.execute(
            "from multiprocessing import shared_memory\nshared_memory.SharedMemory(create=True, size=1000)"
        )
        tmp = session.execute("open('/tmp/ok', 'w').write('fine')\nprint(open('/tmp/ok').read())")
    assert root.status is ExecutionStatus.error and runner.status is ExecutionStatus.error
    for result in (shm, mqueue, shared):
        assert result.status is ExecutionStatus.error, result
        assert result.error is not None and result.error.type in ("FileNotFoundError", "PermissionError", "OSError")
    assert tmp.status is ExecutionStatus.ok and tmp.stdout == "fine\n"


# ---- lifecycle ----------------------------------------------------------------------------------


def test_missing_image_is_reported_with_the_command_that_builds_it(runtime: str) -> None:
    with pytest.raises(SandboxUnavailable, match="learnact images build"):
        make_sandbox(runtime, image="learnact-sandbox:does-not-exist")


def test_containers_left_by_a_killed_process_are_removed_at_start(runtime: str, sandbox_image: str) -> None:
    dead_pid = _a_pid_that_is_not_running()
    api = connect()
    try:
        container = api.create_container(sandbox_image, command=["true"], labels={CONTAINER_LABEL: str(dead_pid)})
        with make_sandbox(runtime):
            pass
        remaining = api.containers(all=True, filters={"id": container["Id"]})
    finally:
        api.close()
    assert remaining == []


def test_an_oom_kill_is_told_from_the_engine_s_event_log(runtime: str, sandbox_image: str) -> None:
    """The backend's fallback when a container died of SIGKILL with no OOM mark (under gVisor the engine can get
    the OOM event after the exit, and then only logs it): a container that hoarded memory past its limit is found
    in the log, one killed by the engine's kill command is not."""
    api = connect()
    config = SandboxConfig(runtime=runtime, memory_mb=64, pool_size=0)
    since = int(time.time()) - 1
    hoard = "hoard = []\nwhile True:\n    hoard.append('x' * 1000000)"
    made = []
    try:
        for command in (["python3", "-c", hoard], ["sleep", "60"]):
            host_config = api.create_host_config(**host_config_kwargs(config))
            made.append(api.create_container(sandbox_image, command=command, host_config=host_config)["Id"])
            api.start(made[-1])
        hoarder, sleeper = made
        api.kill(sleeper)
        assert [api.wait(c, timeout=30)["StatusCode"] for c in made] == [137, 137]
        assert oom_logged(api, hoarder, since)
        assert not oom_logged(api, sleeper, since)
    finally:
        for container in made:
            api.remove_container(container, force=True)
        api.close()


def _a_pid_that_is_not_running() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


# ---- hostile programs --------------------------------------------------------------------------------


@pytest.mark.parametrize("channel", ["protocol", "diagnostics"])
def test_a_flood_after_a_forged_message_ends_in_time_as_crashed(sandbox_image: str, channel: str) -> None:
    """runc: a daemon still copying a flood into an attach socket nobody reads blocked the kill 30 s."""
    fd = "channel.fd_out" if channel == "protocol" else "sys.modules['__main__']._DIAG_FD"
    program = FIND_CHANNEL + (
        "import os, sys\n"
        'os.write(channel.fd_out, b\'{"op": "done", "id": 1, "nonce": "guess", "status": "ok"}\\n\')\n'
        f"fd = {fd}\n"
        "data = b'x' * 65536\n"
        "while True:\n    os.write(fd, data)\n"
    )
    with make_sandbox("runc", check=False, timeout_s=3.0) as sandbox:
        started = time.monotonic()
        with sandbox.session() as session:
            result = session.execute(program)
            after = session.execute("print('fresh')")
        elapsed = time.monotonic() - started
    assert result.status is ExecutionStatus.crashed
    assert result.error is not None and "forged" in result.error.message
    assert after.status is ExecutionStatus.ok and after.stdout == "fresh\n"
    assert elapsed < sandbox.config.timeout_s + 5
