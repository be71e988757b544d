"""The docker backend, for real, under runc and gVisor (runsc): every status, every isolation claim.

Each test starts its own Sandbox without a warm pool (so that no container outlives it; the
autouse fixture in conftest.py checks that none is left) and uses short limits: 2 cores.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import learnact.actions
from learnact.actions import ALLOWED_MODULES, CodeKind, Severity, check
from learnact.envs.base import ArgumentError, ParamSpec, PrimitiveSpec
from learnact.sandbox import ExecutionStatus, Sandbox, SandboxConfig, SandboxUnavailable
from learnact.sandbox.config import CONTAINER_LABEL
from learnact.sandbox.docker_backend import connect

pytestmark = pytest.mark.docker

PICKUP = PrimitiveSpec(name="pickup", params=(ParamSpec(name="block"),), doc="Pick a block up.")
ACTIONS = '''
def grab_all(blocks):
    """Pick up every block in turn; return the observations."""
    return [pickup(block) for block in blocks]


def descend(depth):
    """Recurse without end."""
    return descend(depth + 1)
'''
# Unchecked code finds the runner's protocol channel the way an attacker would: in its memory.
FIND_CHANNEL = "import gc\nchannel = [o for o in gc.get_objects() if type(o).__name__ == 'Channel'][0]\n"


class Recorder:
    """A primitive handler that records what reached the host."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list]] = []

    def __call__(self, name: str, args: list) -> str:
        self.calls.append((name, args))
        if args and args[0] == "lava":
            raise ArgumentError("there is no block called lava")
        return f"You pick up {args[0]}."


@pytest.fixture(params=["runc", "runsc"])
def runtime(request: pytest.FixtureRequest, sandbox_image: str) -> str:
    return request.param


def make_sandbox(runtime: str, **overrides: object) -> Sandbox:
    settings: dict = dict(runtime=runtime, timeout_s=2.0, cpu_s=1, memory_mb=128, pool_size=0)
    settings.update(overrides)
    return Sandbox(SandboxConfig(**settings))


@pytest.fixture
def checked(runtime: str) -> Iterator[Sandbox]:
    with make_sandbox(runtime) as sandbox:
        yield sandbox


@pytest.fixture
def unchecked(runtime: str) -> Iterator[Sandbox]:
    with make_sandbox(runtime, check=False) as sandbox:
        yield sandbox


# ---- sessions ----------------------------------------------------------------------------------


def test_session_keeps_actions_and_state_across_executions(checked: Sandbox) -> None:
    handler = Recorder()
    with checked.session([PICKUP], handler) as session:
        assert session.load_actions(ACTIONS).status is ExecutionStatus.ok
        first = session.execute("seen = grab_all(['a', 'b'])\nprint(len(seen))")
        second = session.execute("print(seen[1])")
    assert first.status is ExecutionStatus.ok and first.stdout == "2\n"
    assert [(c.name, c.args, c.observation) for c in first.calls] == [
        ("pickup", ["a"], "You pick up a."),
        ("pickup", ["b"], "You pick up b."),
    ]
    assert second.stdout == "You pick up b.\n"
    assert handler.calls == [("pickup", ["a"]), ("pickup", ["b"])]


def test_argument_error_reaches_the_program_as_value_error(checked: Sandbox) -> None:
    with checked.session([PICKUP], Recorder()) as session:
        caught = session.execute("try:\n    pickup('lava')\nexcept ValueError as exc:\n    print('caught', exc)")
        uncaught = session.execute("pickup('lava')")
    assert caught.status is ExecutionStatus.ok
    assert caught.stdout == "caught there is no block called lava\n"
    assert uncaught.status is ExecutionStatus.error
    assert uncaught.error is not None and uncaught.error.type == "ValueError"
    assert uncaught.error.message == "there is no block called lava"


def test_rejected_code_never_runs(checked: Sandbox) -> None:
    handler = Recorder()
    with checked.session([PICKUP], handler) as session:
        result = session.execute("import os\npickup('a')")
    assert result.status is ExecutionStatus.rejected
    assert any("os" in finding.message for finding in result.findings)
    assert handler.calls == []


def test_traceback_shows_only_the_programs_own_lines(checked: Sandbox) -> None:
    with checked.session([PICKUP], Recorder()) as session:
        session.load_actions(ACTIONS)
        result = session.execute("descend(0)")
    assert result.status is ExecutionStatus.error
    assert result.error is not None and result.error.type == "RecursionError"
    assert '"<agent>", line 1' in result.error.traceback
    assert '"<action>"' in result.error.traceback
    assert "runner.py" not in result.error.traceback


# ---- the checker's policy, enforced at run time ------------------------------------------------

# Code the checker refuses, each for a name the runner must not offer either.
REFUSED_AT_RUN_TIME = {
    "import string\nstring.Formatter": "AttributeError",
    "import typing\ntyping.get_type_hints": "AttributeError",
    "import os": "ImportError",
    "setattr": "NameError",
}


def test_checked_code_imports_every_module_the_checker_allows(checked: Sandbox) -> None:
    code = "\n".join(f"import {name}" for name in sorted(ALLOWED_MODULES))
    code += "\nprint(copy.deepcopy([1, [2]]), typing.Optional[int])"
    with checked.session() as session:
        result = session.execute(code)
    assert result.status is ExecutionStatus.ok, result.error
    assert result.stdout == "[1, [2]] typing.Optional[int]\n"


def test_runner_refuses_what_the_checker_denies_even_when_the_checker_is_bypassed(
    checked: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(learnact.actions, "check", lambda *args, **kwargs: [])  # restricted, unchecked
    with checked.session() as session:
        for code, error_type in REFUSED_AT_RUN_TIME.items():
            assert any(f.severity is Severity.error for f in check(code, CodeKind.agent_snippet)), code
            result = session.execute(code)
            assert result.findings == [] and result.status is ExecutionStatus.error, code
            assert result.error is not None and result.error.type == error_type, code


# ---- limits ------------------------------------------------------------------------------------


def test_infinite_loop_times_out(checked: Sandbox) -> None:
    with checked.session() as session:
        result = session.execute("n = 0\nwhile True:\n    n = n + 1")
    assert result.status is ExecutionStatus.timeout


def test_loop_ignoring_signals_is_killed_and_the_session_goes_on(unchecked: Sandbox) -> None:
    program = (
        "import signal\nsignal.signal(signal.SIGPROF, signal.SIG_IGN)\n"
        "while True:\n    try:\n        while True: pass\n    except BaseException:\n        pass\n"
    )
    handler = Recorder()
    with unchecked.session([PICKUP], handler) as session:
        session.load_actions(ACTIONS)
        result = session.execute(program)
        after = session.execute("print(grab_all(['c']))")
    assert result.status is ExecutionStatus.timeout
    assert result.error is not None and "wall-clock" in result.error.message
    assert after.status is ExecutionStatus.ok  # a fresh sandbox with the actions loaded again
    assert after.stdout == "['You pick up c.']\n"


def test_sleep_is_killed_at_the_wall_clock_limit(unchecked: Sandbox) -> None:
    with unchecked.session() as session:
        started = time.monotonic()
        result = session.execute("import time\ntime.sleep(60)")
    assert result.status is ExecutionStatus.timeout
    assert time.monotonic() - started < 30


def test_memory_bomb_is_stopped(checked: Sandbox) -> None:
    with checked.session() as session:
        result = session.execute("hoard = []\nwhile True:\n    hoard.append('x' * 1000000)")
        after = session.execute("print('alive')")
    assert result.status is ExecutionStatus.memory
    assert after.stdout == "alive\n"


def test_fork_bomb_is_contained(unchecked: Sandbox) -> None:
    with unchecked.session() as session:
        result = session.execute("import os\nwhile True:\n    os.fork()")
        census = session.execute("import os\nprint(sum(name.isdigit() for name in os.listdir('/proc')))")
    # The program fails to fork further (error), is stopped (timeout), or takes its sandbox down
    # (crashed; gVisor's sentry may give up): never the host, and the next execution is clean.
    assert result.status in (ExecutionStatus.error, ExecutionStatus.timeout, ExecutionStatus.crashed)
    assert census.status is ExecutionStatus.ok
    assert census.stdout == "1\n"  # the runner alone: every forked process is gone


def test_huge_output_hits_the_output_limit(runtime: str) -> None:
    with make_sandbox(runtime, max_output_bytes=10_000) as sandbox, sandbox.session() as session:
        result = session.execute("while True:\n    print('x' * 1000)")
    assert result.status is ExecutionStatus.output_limit
    assert 0 < len(result.stdout) <= 10_000


def test_primitive_call_flood_hits_the_call_limit(runtime: str) -> None:
    handler = Recorder()
    with make_sandbox(runtime, max_calls=5) as sandbox, sandbox.session([PICKUP], handler) as session:
        result = session.execute("while True:\n    pickup('a')")
    assert result.status is ExecutionStatus.call_limit
    assert len(result.calls) == 5
    assert len(handler.calls) == 5


# ---- isolation (check off: the container alone must hold) ---------------------------------------


def test_no_connection_reaches_a_listener_on_the_hosts_loopback(unchecked: Sandbox) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        program = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)"
        with unchecked.session() as session:
            result = session.execute(program)
        with pytest.raises(TimeoutError):
            listener.accept()
    assert result.status is ExecutionStatus.error


def test_host_files_are_invisible(unchecked: Sandbox, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host-secret-4242")
    with unchecked.session() as session:
        result = session.execute(f"print(open({str(secret)!r}).read())")
    assert result.status is ExecutionStatus.error
    assert result.error is not None and result.error.type == "FileNotFoundError"
    assert "host-secret-4242" not in result.stdout


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


def test_host_environment_is_invisible(unchecked: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEARNACT_TEST_SECRET", "env-secret-7777")
    with unchecked.session() as session:
        result = session.execute("import os\nprint(dict(os.environ))\nprint(open('/proc/1/environ').read())")
    assert result.status is ExecutionStatus.ok
    assert "env-secret-7777" not in result.stdout and "LEARNACT_TEST_SECRET" not in result.stdout


def test_program_output_never_mixes_with_the_protocol(unchecked: Sandbox) -> None:
    with unchecked.session() as session:
        result = session.execute('import os\nos.write(1, b\'{"op": "ready"}\\n\')\nos.write(2, b"err\\n")')
    assert result.status is ExecutionStatus.ok
    assert result.stdout == '{"op": "ready"}\nerr\n'


# ---- forged and broken protocol messages ----------------------------------------------------------


@pytest.mark.parametrize(
    "forgery, reason",
    [
        ("os.write(channel.fd_out, b'not json\\n')", "malformed"),
        ('os.write(channel.fd_out, b\'{"op": "launch"}\\n\')', "unknown op"),
        ('os.write(channel.fd_out, b\'{"op": "call", "id": 999, "name": "pickup", "args": []}\\n\')', "id 999"),
        ("data = b'x' * 300000\nwhile data:\n    data = data[os.write(channel.fd_out, data):]", "exceeds the cap"),
        (
            'os.write(channel.fd_out, b\'{"op": "done", "id": 2, "nonce": "guess", "status": "ok"}\\n\')\n'
            "raise RuntimeError('the real outcome')",
            "forged",
        ),
        (
            'os.write(channel.fd_out, b\'{"op": "done", "id": 2, "nonce": "x", "status": "call_limit", '
            '"error": {"type": "X", "message": "m"}}\\n\')',
            "status",
        ),
    ],
    ids=["garbage", "unknown-op", "wrong-id", "oversized", "forged-done", "host-only-status"],
)
def test_forged_protocol_messages_end_the_session_as_crashed(unchecked: Sandbox, forgery: str, reason: str) -> None:
    handler = Recorder()
    with unchecked.session([PICKUP], handler) as session:
        result = session.execute(FIND_CHANNEL + "import os\n" + forgery)
        after = session.execute("print('fresh')")
    assert result.status is ExecutionStatus.crashed
    assert result.error is not None and reason in result.error.message
    assert handler.calls == []
    assert after.status is ExecutionStatus.ok and after.stdout == "fresh\n"


def test_threads_left_running_cannot_act_after_the_execution(unchecked: Sandbox) -> None:
    program = FIND_CHANNEL + (
        "import os, threading, time\n"
        "def later():\n"
        "    time.sleep(0.3)\n"
        "    try:\n        pickup('late')\n    except RuntimeError:\n        pass\n"
        '    os.write(channel.fd_out, b\'{"op": "done", "id": 3, "nonce": "x", "status": "ok"}\\n\')\n'
        "threading.Thread(target=later).start()\n"
    )
    handler = Recorder()
    with unchecked.session([PICKUP], handler) as session:
        first = session.execute(program)
        time.sleep(0.8)
        second = session.execute("pickup('b')")
    assert first.status is ExecutionStatus.ok
    assert second.status is ExecutionStatus.ok
    assert handler.calls == [("pickup", ["b"])]


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


def test_warm_pool_hands_out_a_fresh_container_per_session(runtime: str) -> None:
    with make_sandbox(runtime, pool_size=2, check=False) as sandbox:
        _wait_until(lambda: sandbox.warm() == 2)
        with sandbox.session() as first:
            mark = first.execute("open('/tmp/mark', 'w').write('used')")
        with sandbox.session() as second:
            probe = second.execute("print(len(open('/tmp/mark').read()))")
    assert mark.status is ExecutionStatus.ok
    assert probe.status is ExecutionStatus.error  # never the container the first session used


def _a_pid_that_is_not_running() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _wait_until(condition, timeout_s: float = 60.0) -> None:
    end = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.05)


# ---- hostile text: what the host keeps of what the sandbox says --------------------------------------


def test_lone_surrogates_in_calls_errors_and_output_do_not_break_the_host(runtime: str) -> None:
    handler = Recorder()
    program = "pickup('\\ud800')\nprint('out \\udfff')\nraise ValueError('bad \\ud800')"
    for checked in (True, False):
        with make_sandbox(runtime, check=checked) as sandbox, sandbox.session([PICKUP], handler) as session:
            result = session.execute(program)
        assert result.status is ExecutionStatus.error, (checked, result)
        assert result.error is not None and result.error.type == "ValueError"
        assert result.error.message == "bad \\ud800"
        assert [(c.name, c.args) for c in result.calls] == [("pickup", ["\\ud800"])]
        assert result.stdout == "out \\udfff\n"
        result.model_dump_json().encode("utf-8")
    assert handler.calls == [("pickup", ["\\ud800"])] * 2


def test_huge_arguments_of_many_rejected_calls_keep_the_result_small(runtime: str) -> None:
    def reject(name: str, args: list) -> str:
        raise ArgumentError(f"there is no block called {args[0]}")

    program = "for i in range(200):\n    try:\n        pickup('x' * 250000)\n    except ValueError:\n        pass"
    with make_sandbox(runtime, timeout_s=60.0) as sandbox, sandbox.session([PICKUP], reject) as session:
        result = session.execute(program)
    config = sandbox.config
    assert result.status is ExecutionStatus.ok and len(result.calls) == 200 == config.max_calls
    # Every byte of the calls is within max_calls_bytes, plus a call's name, field names and marks.
    bound = config.max_calls_bytes + config.max_calls * 200 + 1000
    assert len(result.model_dump_json()) <= bound
    assert all("…[truncated " in call.observation for call in result.calls)


def test_output_is_cut_on_a_character_boundary_at_the_cap(runtime: str) -> None:
    with make_sandbox(runtime, max_output_bytes=10) as sandbox, sandbox.session() as session:
        straddling = session.execute("print('abcdefghi' + 'é')")  # é takes bytes 10 and 11
        emoji = session.execute("print('ab' + '😀' * 5)")
    assert straddling.status is ExecutionStatus.output_limit and straddling.stdout == "abcdefghi"
    assert emoji.status is ExecutionStatus.output_limit and emoji.stdout == "ab😀😀"


def test_invalid_utf8_under_the_cap_keeps_the_programs_status(runtime: str) -> None:
    with make_sandbox(runtime, check=False, max_output_bytes=10) as sandbox, sandbox.session() as session:
        invalid = session.execute("import os\nos.write(1, b'\\xff' * 8)")
        failing = session.execute("import os\nos.write(1, b'ok\\xc3')\nraise KeyError('k')")
    # Each invalid byte becomes U+FFFD (3 bytes): the text is cut at the cap, the status is the program's.
    assert invalid.status is ExecutionStatus.ok and invalid.stdout == "\ufffd" * 3
    assert failing.status is ExecutionStatus.error and failing.stdout == "ok\ufffd"


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
