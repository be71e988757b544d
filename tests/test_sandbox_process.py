"""The process backend (no Docker): its own limits, and what its documentation promises.

What every backend does (statuses, limits, the protocol, hostile text) is in test_backend_contract.py.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from learnact.actions import CodeKind
from learnact.envs.base import ParamSpec, PrimitiveSpec
from learnact.sandbox import ExecutionStatus, Sandbox, SandboxConfig, SandboxUnavailable, process_backend
from learnact.sandbox.process_backend import sweep_stale_directories


def make_sandbox(**overrides: object) -> Sandbox:
    settings: dict = dict(backend="process", timeout_s=2.0, cpu_s=1, memory_mb=256, pool_size=0)
    settings.update(overrides)
    return Sandbox(SandboxConfig(**settings))


@pytest.fixture
def unchecked() -> Iterator[Sandbox]:
    with make_sandbox(check=False) as sandbox:
        yield sandbox


# ---- never root ----------------------------------------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="what the process backend does when started by root")


@pytest.fixture
def root_only_file() -> Iterator[tuple[str, str]]:
    """A file only root can read, next to one everybody can read, in a directory everybody can enter."""
    folder = tempfile.mkdtemp()
    os.chmod(folder, 0o755)
    secret, public = os.path.join(folder, "secret"), os.path.join(folder, "public")
    for path, mode in ((secret, 0o600), (public, 0o644)):
        with open(path, "w") as f:
            f.write("root-secret-4242" if path == secret else "public-text")
        os.chmod(path, mode)
    yield secret, public
    shutil.rmtree(folder)


@needs_root
def test_started_by_root_the_program_runs_as_nobody_and_cannot_read_root_only_files(
    unchecked: Sandbox, root_only_file: tuple[str, str]
) -> None:
    secret, public = root_only_file
    with unchecked.session() as session:
        # Seen from inside a new user namespace every uid is 65534: ask the host's /proc instead.
        pid = int(session.execute("import os\nprint(os.getpid())").stdout)
        with open(f"/proc/{pid}/status") as f:
            status = dict(line.split(":", 1) for line in f.read().splitlines())
        readable = session.execute(f"print(open({public!r}).read())")
        refused = session.execute(f"print(open({secret!r}).read())")
        written = session.execute("open('scratch', 'w').write('x')\nprint(open('scratch').read())")
    assert status["Uid"].split() == status["Gid"].split() == ["65534"] * 4
    assert status["Groups"].split() == []
    assert readable.stdout == "public-text\n"  # the directory is open: only the file's mode protects it
    assert refused.status is ExecutionStatus.error and refused.error is not None
    assert refused.error.type == "PermissionError" and "root-secret" not in refused.stdout
    assert written.stdout == "x\n"  # its private working directory is its own


@needs_root
@pytest.mark.parametrize("path", ["/var/run/docker.sock", "/run/docker.sock"])
def test_started_by_root_the_program_cannot_connect_to_the_docker_socket(unchecked: Sandbox, path: str) -> None:
    if not os.path.exists(path):
        pytest.skip(f"no {path} here")
    code = f"import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect({path!r})\nprint('connected')"
    with unchecked.session() as session:
        result = session.execute(code)
    assert result.status is ExecutionStatus.error and result.error is not None
    assert result.error.type == "PermissionError" and "connected" not in result.stdout


@pytest.fixture
def docker_host_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A unix socket named by DOCKER_HOST that every user may connect to."""
    folder = tempfile.mkdtemp()
    os.chmod(folder, 0o755)
    path = os.path.join(folder, "docker.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    os.chmod(path, 0o666)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    yield path
    server.close()
    shutil.rmtree(folder)


def test_refuses_to_start_when_its_user_could_connect_to_the_docker_socket(docker_host_socket: str) -> None:
    with pytest.raises(SandboxUnavailable, match="refuses to start.*Docker socket") as raised:
        make_sandbox()
    assert docker_host_socket in str(raised.value) and "docker backend" in str(raised.value)
    os.chmod(docker_host_socket, 0o600 if os.geteuid() == 0 else 0o000)
    with make_sandbox() as sandbox, sandbox.session() as session:  # nobody (or no one) can connect now
        assert session.execute("print(1)").stdout == "1\n"


def test_host_packages_are_not_importable(unchecked: Sandbox) -> None:
    with unchecked.session() as session:
        result = session.execute("import pydantic")
    assert result.status is ExecutionStatus.error
    assert result.error is not None and result.error.type == "ModuleNotFoundError"


# ---- programs ----------------------------------------------------------------------------------------


def test_a_program_with_helpers_runs_through_a_checked_session_and_calls_primitives() -> None:
    primitives = [PrimitiveSpec(name="pickup", params=(ParamSpec(name="block"),), doc="Pick up a block.")]
    performed: list[tuple[str, list]] = []

    def handler(name: str, args: list) -> str:
        performed.append((name, args))
        return f"You pick up {args[0]}."

    program = (
        "def solve(blocks):\n    return [grab(b) for b in blocks]\n\n\n"  # grab is defined below
        "def grab(block):\n    return pickup(block)\n\n\nprint(len(solve(['b1', 'b2'])))\n"
    )
    with make_sandbox() as sandbox, sandbox.session(primitives, handler) as session:
        result = session.execute(program, kind=CodeKind.program)
        again = session.execute("print(grab('b3'))")  # its functions stay callable in the session
        refused = session.execute("def f():\n    return open('/etc/passwd')\n\n\nf()\n", kind=CodeKind.program)
        as_snippet = session.execute(program)  # a snippet defines no functions
    assert result.status is ExecutionStatus.ok, result
    assert result.stdout == "2\n" and [c.args for c in result.calls] == [["b1"], ["b2"]]
    assert again.stdout == "You pick up b3.\n"
    assert performed == [("pickup", ["b1"]), ("pickup", ["b2"]), ("pickup", ["b3"])]
    assert refused.status is ExecutionStatus.rejected and [f.rule for f in refused.findings] == ["LA003"]
    assert as_snippet.status is ExecutionStatus.rejected and "LA010" in {f.rule for f in as_snippet.findings}
    with pytest.raises(ValueError, match="load_actions"):
        session.execute(program, kind=CodeKind.action_module)


# ---- how a sandbox ended ---------------------------------------------------------------------------


def test_a_signal_that_killed_the_runner_is_named(unchecked: Sandbox) -> None:
    with unchecked.session() as session:
        result = session.execute("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)")
    assert result.status is ExecutionStatus.crashed
    assert result.error is not None and "killed by SIGSEGV" in result.error.message


def test_the_sessions_cpu_limit_is_reported_as_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process_backend, "session_cpu_s", lambda config: 1)  # instead of at least a minute
    program = "import signal\nsignal.signal(signal.SIGPROF, signal.SIG_IGN)\nwhile True:\n    pass"
    with make_sandbox(check=False, timeout_s=20.0) as sandbox, sandbox.session() as session:
        started = time.monotonic()
        result = session.execute(program)  # it ignores the runner's alarm: RLIMIT_CPU kills it
        elapsed = time.monotonic() - started
        after = session.execute("print('alive')")
    assert result.status is ExecutionStatus.timeout, result
    assert result.error is not None and "CPU time limit" in result.error.message
    assert elapsed < 10 and after.stdout == "alive\n"


# ---- cleanup -----------------------------------------------------------------------------------------


def test_the_directories_of_killed_processes_are_swept_and_those_of_live_ones_kept(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f"learnact-process-{dead.pid}-abc123"
    (stale / "sandbox-x").mkdir(parents=True)
    (stale / "lib").mkdir()
    (stale / "runner.py").write_text("")
    live = tmp_path / f"learnact-process-{os.getpid()}-def456"
    (live / "lib").mkdir(parents=True)
    other = tmp_path / f"learnact-process-{dead.pid}-notes"  # not a backend's: no lib inside
    other.mkdir()
    assert sweep_stale_directories(str(tmp_path)) == 1
    assert not stale.exists() and live.exists() and other.exists()


def test_a_closed_sandbox_leaves_no_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    parent = Path(tempfile.mkdtemp())
    parent.chmod(0o755)  # started by root, the runner's user must reach its files
    monkeypatch.setattr(tempfile, "tempdir", str(parent))
    try:
        with make_sandbox() as sandbox, sandbox.session() as session:
            assert session.execute("print(1)").ok
            assert len(list(parent.iterdir())) == 1  # the backend's own directory, the sandbox's inside
        assert list(parent.iterdir()) == []
    finally:
        shutil.rmtree(parent)
