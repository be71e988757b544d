"""The process backend (no Docker): its own limits, and what its documentation promises."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

import learnact.actions
from learnact.actions import ALLOWED_MODULES, CodeKind, Severity, check
from learnact.envs.base import ParamSpec, PrimitiveSpec
from learnact.sandbox import ExecutionStatus, Sandbox, SandboxConfig

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
        probe = session.execute("import os\nprint(os.getuid())")
        if probe.stdout == f"{__import__('os').getuid()}\n":
            pytest.skip("this kernel refuses unprivileged user namespaces: the process backend has network here")
        with socket.create_server(("127.0.0.1", 0)) as listener:
            listener.settimeout(0.5)
            port = listener.getsockname()[1]
            result = session.execute(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)")
            with pytest.raises(TimeoutError):
                listener.accept()
    assert result.status is ExecutionStatus.error


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
