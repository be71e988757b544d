"""The process backend (no Docker): its own limits, and what its documentation promises."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator

import pytest

import learnact.actions
from learnact.actions import ALLOWED_MODULES, CodeKind, Severity, check
from learnact.envs.base import ParamSpec, PrimitiveSpec
from learnact.sandbox import ExecutionStatus, Sandbox, SandboxConfig, SandboxUnavailable

PICKUP = PrimitiveSpec(name="pickup", params=(ParamSpec(name="block"),), doc="Pick a block up.")
ACTIONS = '''
def grab(block):
    """Pick a block up."""
    return pickup(block)
'''


def make_sandbox(**overrides: object) -> Sandbox:
    settings: dict = dict(backend="process", timeout_s=2.0, cpu_s=1, memory_mb=256, pool_size=0)
    settings.update(overrides)
    return Sandbox(SandboxConfig(**settings))


@pytest.fixture
def unchecked() -> Iterator[Sandbox]:
    with make_sandbox(check=False) as sandbox:
        yield sandbox


def handler(name: str, args: list) -> str:
    return f"You pick up {args[0]}."


def test_actions_and_state_survive_across_executions() -> None:
    with make_sandbox() as sandbox, sandbox.session([PICKUP], handler) as session:
        assert session.load_actions(ACTIONS).ok
        first = session.execute("seen = grab('a')")
        second = session.execute("print(seen)")
    assert first.ok and [c.observation for c in first.calls] == ["You pick up a."]
    assert second.stdout == "You pick up a.\n"


def test_a_restarted_sandbox_forgets_snippet_names_but_keeps_the_actions() -> None:
    with make_sandbox() as sandbox, sandbox.session([PICKUP], handler) as session:
        assert session.load_actions(ACTIONS).ok
        assert session.execute("seen = grab('a')").ok
        # It swallows the runner's CPU alarm: the host's wall clock kills the sandbox.
        stubborn = "while True:\n    try:\n        while True:\n            pass\n    except:\n        pass\n"
        assert session.execute(stubborn).status is ExecutionStatus.timeout
        forgotten = session.execute("print(seen)")
        kept = session.execute("print(grab('b'))")
    assert forgotten.status is ExecutionStatus.rejected  # the checker says so, not a NameError at run time
    assert [f.rule for f in forgotten.findings] == ["LA015"]
    assert kept.ok and kept.stdout == "You pick up b.\n"


def test_cpu_alarm_ends_an_infinite_loop() -> None:
    with make_sandbox() as sandbox, sandbox.session() as session:
        result = session.execute("while True:\n    pass")
    assert result.status is ExecutionStatus.timeout


def test_address_space_limit_turns_a_memory_bomb_into_memory(unchecked: Sandbox) -> None:
    with unchecked.session() as session:
        result = session.execute("hoard = []\nwhile True:\n    hoard.append(bytearray(10**7))")
        after = session.execute("print('alive')")
    assert result.status is ExecutionStatus.memory
    assert after.stdout == "alive\n"


def test_wall_clock_kill_and_transparent_restart(unchecked: Sandbox) -> None:
    with unchecked.session([PICKUP], handler) as session:
        session.load_actions(ACTIONS)
        slept = session.execute("import time\ntime.sleep(30)")
        after = session.execute("print(grab('b'))")
    assert slept.status is ExecutionStatus.timeout
    assert after.ok and after.stdout == "You pick up b.\n"


def test_a_sandbox_that_exits_is_reported_as_crashed(unchecked: Sandbox) -> None:
    with unchecked.session() as session:
        result = session.execute("import os\nos._exit(7)")
    assert result.status is ExecutionStatus.crashed
    assert result.error is not None and "exit code 7" in result.error.message


def test_environment_is_empty(unchecked: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEARNACT_TEST_SECRET", "env-secret-7777")
    with unchecked.session() as session:
        result = session.execute("import os\nprint(dict(os.environ))")
    assert result.ok and "env-secret-7777" not in result.stdout


def test_no_network_where_user_namespaces_are_allowed(unchecked: Sandbox) -> None:
    with unchecked.session() as session:
        # The initial user namespace maps every uid; a new one that nobody set up maps none.
        probe = session.execute("print(open('/proc/self/uid_map').read().split())")
        if probe.stdout == "['0', '0', '4294967295']\n":
            pytest.skip("this kernel refuses unprivileged user namespaces: the process backend has network here")
        with socket.create_server(("127.0.0.1", 0)) as listener:
            listener.settimeout(0.5)
            port = listener.getsockname()[1]
            result = session.execute(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)")
            with pytest.raises(TimeoutError):
                listener.accept()
    assert result.status is ExecutionStatus.error


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


# ---- the checker's policy, enforced at run time ------------------------------------------------

# Code the checker refuses, each for a name the runner must not offer either.
REFUSED_AT_RUN_TIME = {
    "import string\nstring.Formatter": "AttributeError",
    "import typing\ntyping.get_type_hints": "AttributeError",
    "import json\njson.codecs": "AttributeError",
    "import os": "ImportError",
    "setattr": "NameError",
}


def test_checked_code_imports_every_module_the_checker_allows() -> None:
    code = "\n".join(f"import {name}" for name in sorted(ALLOWED_MODULES))
    code += "\nprint(copy.deepcopy([1, [2]]), typing.Optional[int])"
    with make_sandbox() as sandbox, sandbox.session() as session:
        result = session.execute(code)
    assert result.status is ExecutionStatus.ok, result.error
    assert result.stdout == "[1, [2]] typing.Optional[int]\n"


@pytest.mark.parametrize("code", sorted(REFUSED_AT_RUN_TIME))
def test_runner_refuses_what_the_checker_denies_even_when_the_checker_is_bypassed(
    code: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert any(f.severity is Severity.error for f in check(code, CodeKind.agent_snippet))
    monkeypatch.setattr(learnact.actions, "check", lambda *args, **kwargs: [])  # restricted, unchecked
    with make_sandbox() as sandbox, sandbox.session() as session:
        result = session.execute(code)
    assert result.findings == []
    assert result.status is ExecutionStatus.error
    assert result.error is not None and result.error.type == REFUSED_AT_RUN_TIME[code]
