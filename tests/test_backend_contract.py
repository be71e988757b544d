"""The backend contract: what every backend does, run against docker-runc, docker-runsc, bwrap and process.

A backend-specific promise (container flags, root dropping, the Docker socket) is tested in its
own file; here is what a session sees whatever runs its sandbox: the protocol, every status, the
limits the host enforces, hostile text, restarts. Each test starts its own Sandbox without a warm
pool (so that no sandbox outlives it; conftest.py checks that no container is left) and uses short
limits: 2 cores. The docker params skip without an engine, and fail under CI=true.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import learnact.actions
from learnact.actions import ALLOWED_MODULES, CodeKind, Severity, check
from learnact.envs.base import ArgumentError, ParamSpec, PrimitiveSpec
from learnact.sandbox import ExecutionStatus, Sandbox, SandboxConfig
from learnact.sandbox.backend import open_backend
from learnact.sandbox.transport import ExitInfo, Transport

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
# Each backend's settings for these tests: short limits; the process backend's memory limit is on
# the address space, which the interpreter alone takes a good part of.
SETTINGS: dict[str, dict] = {
    "docker-runc": dict(backend="docker", runtime="runc", memory_mb=128),
    "docker-runsc": dict(backend="docker", runtime="runsc", memory_mb=128),
    "bwrap": dict(backend="bwrap", memory_mb=256),
    "process": dict(backend="process", memory_mb=256),
}
MakeSandbox = Callable[..., Sandbox]


class Recorder:
    """A primitive handler that records what reached the host."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list]] = []

    def __call__(self, name: str, args: list) -> str:
        self.calls.append((name, args))
        if args and args[0] == "lava":
            raise ArgumentError("there is no block called lava")
        return f"You pick up {args[0]}."


@pytest.fixture(
    params=[
        pytest.param("docker-runc", marks=pytest.mark.docker),
        pytest.param("docker-runsc", marks=pytest.mark.docker),
        pytest.param("bwrap", marks=pytest.mark.docker),  # its root file system comes from the image build
        "process",
    ]
)
def backend(request: pytest.FixtureRequest) -> str:
    """Which backend runs the test's sandboxes (docker: with the image built and current; bwrap: with its
    root file system)."""
    if request.param.startswith("docker"):
        request.getfixturevalue("sandbox_image")
    if request.param == "bwrap":
        request.getfixturevalue("bwrap_root")
    return request.param


@pytest.fixture
def make_sandbox(backend: str) -> MakeSandbox:
    def make(**overrides: object) -> Sandbox:
        settings: dict = dict(timeout_s=2.0, cpu_s=1, pool_size=0, **SETTINGS[backend])
        settings.update(overrides)
        return Sandbox(SandboxConfig(**settings))

    return make


@pytest.fixture
def checked(make_sandbox: MakeSandbox) -> Iterator[Sandbox]:
    with make_sandbox() as sandbox:
        yield sandbox


@pytest.fixture
def unchecked(make_sandbox: MakeSandbox) -> Iterator[Sandbox]:
    with make_sandbox(check=False) as sandbox:
        yield sandbox


# ---- the backend itself ---------------------------------------------------------------------------


def test_a_backend_starts_ready_sandboxes_from_any_thread_and_says_how_they_ended(backend: str) -> None:
    config = SandboxConfig(timeout_s=2.0, cpu_s=1, pool_size=0, **SETTINGS[backend])
    opened = open_backend(config)
    try:
        started: list[Transport] = []
        filler = threading.Thread(target=lambda: started.append(opened.start()))  # as the warm pool's filler
        filler.start()
        started.append(opened.start())
        filler.join()
        assert len(started) == 2
        killed = started[0].finish(kill=True)
        started[1].send(b'{"op": "launch"}\n')  # not the setup it expects: the runner gives up
        assert started[1].read_line(time.monotonic() + 30, config.max_message_bytes) is None
        ended = started[1].finish(kill=False)
        for transport in started:
            transport.close()  # idempotent
    finally:
        opened.close()
    assert isinstance(killed, ExitInfo) and not killed.oom_killed and not killed.cpu_limited
    assert killed.signal is not None or killed.exit_code is not None
    assert (ended.exit_code, ended.signal, ended.describe()) == (3, None, "exit code 3"), ended
    assert "expected a setup message first" in ended.diagnostics


def test_a_sandbox_outlives_the_thread_that_started_it(backend: str) -> None:
    """The warm pool and the executors start sandboxes from threads that end first (a death signal tied to
    the starting thread, as bubblewrap's --die-with-parent, would kill them)."""
    config = SandboxConfig(timeout_s=2.0, cpu_s=1, pool_size=0, **SETTINGS[backend])
    opened = open_backend(config)
    try:
        started: list[Transport] = []
        starter = threading.Thread(target=lambda: started.append(opened.start()))
        starter.start()
        starter.join()
        time.sleep(0.5)
        (transport,) = started
        transport.send(b'{"op": "launch"}\n')
        assert transport.read_line(time.monotonic() + 30, config.max_message_bytes) is None
        ended = transport.finish(kill=False)
        transport.close()
    finally:
        opened.close()
    assert ended.exit_code == 3 and "expected a setup message first" in ended.diagnostics, ended


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


def test_a_restarted_sandbox_forgets_snippet_names_but_keeps_the_actions(checked: Sandbox) -> None:
    with checked.session([PICKUP], Recorder()) as session:
        assert session.load_actions(ACTIONS).ok
        assert session.execute("seen = grab_all(['a'])").ok
        # It swallows the runner's CPU alarm: the host's wall clock kills the sandbox.
        stubborn = "while True:\n    try:\n        while True:\n            pass\n    except:\n        pass\n"
        assert session.execute(stubborn).status is ExecutionStatus.timeout
        forgotten = session.execute("print(seen)")
        kept = session.execute("print(grab_all(['b']))")
    assert forgotten.status is ExecutionStatus.rejected  # the checker says so, not a NameError at run time
    assert [f.rule for f in forgotten.findings] == ["LA015"]
    assert kept.ok and kept.stdout == "['You pick up b.']\n"


def test_warm_pool_hands_out_a_fresh_sandbox_per_session(make_sandbox: MakeSandbox) -> None:
    with make_sandbox(pool_size=2, check=False) as sandbox:
        _wait_until(lambda: sandbox.warm() == 2)
        with sandbox.session() as first:
            mark = first.execute("open('mark', 'w').write('used')")  # in its own working directory
        with sandbox.session() as second:
            probe = second.execute("print(len(open('mark').read()))")
    assert mark.status is ExecutionStatus.ok
    assert probe.status is ExecutionStatus.error  # never the sandbox the first session used


def test_the_warm_pool_starts_no_more_sandboxes_than_the_sessions_expected(make_sandbox: MakeSandbox) -> None:
    with make_sandbox(pool_size=2, check=False) as sandbox:
        _wait_until(lambda: sandbox.warm() == 2)
        sandbox.expect(3)  # three more sessions: the two waiting, and one to start ahead
        for _ in range(2):
            with sandbox.session() as session:
                assert session.execute("print(1)").ok
        _wait_until(lambda: sandbox.warm() == 1)
        with sandbox.session() as session:
            assert session.execute("print(1)").ok
        time.sleep(1.0)  # longer than any backend's start: nothing was started for a session not expected
        assert sandbox.warm() == 0


# ---- the checker's policy, enforced at run time ------------------------------------------------

# Code the checker refuses, each for a name the runner must not offer either.
REFUSED_AT_RUN_TIME = {
    "import string\nstring.Formatter": "AttributeError",
    "import typing\ntyping.get_type_hints": "AttributeError",
    "import json\njson.codecs": "AttributeError",
    "import os": "ImportError",
    "setattr": "NameError",
}


def test_checked_code_imports_every_module_the_checker_allows(checked: Sandbox) -> None:
    code = "\n".join(f"import {name}" for name in sorted(ALLOWED_MODULES))
    code += "\nprint(copy.deepcopy([1, [2]]), typing.Optional[int])"
    with checked.session() as session:
        result = session.execute(code)
    assert result.status is ExecutionStatus.ok, result.error
    assert result.stdout == "[1, [2]] Optional[int]\n"  # typing names are inert stand-ins that print so


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
    with unchecked.session([PICKUP], Recorder()) as session:
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
        after = session.execute("print('alive')")
    assert result.status is ExecutionStatus.timeout
    assert time.monotonic() - started < 30
    assert after.stdout == "alive\n"


def test_memory_bomb_is_stopped(checked: Sandbox) -> None:
    with checked.session() as session:
        result = session.execute("hoard = []\nwhile True:\n    hoard.append('x' * 1000000)")
        after = session.execute("print('alive')")
    assert result.status is ExecutionStatus.memory
    assert after.stdout == "alive\n"


def test_a_sandbox_that_exits_is_reported_as_crashed_with_its_exit_code(unchecked: Sandbox) -> None:
    with unchecked.session() as session:
        result = session.execute("import os\nos._exit(7)")
        after = session.execute("print('alive')")
    assert result.status is ExecutionStatus.crashed
    assert result.error is not None and "exit code 7" in result.error.message
    assert after.stdout == "alive\n"


def test_huge_output_hits_the_output_limit(make_sandbox: MakeSandbox) -> None:
    with make_sandbox(max_output_bytes=10_000) as sandbox, sandbox.session() as session:
        result = session.execute("while True:\n    print('x' * 1000)")
    assert result.status is ExecutionStatus.output_limit
    assert 0 < len(result.stdout) <= 10_000


def test_primitive_call_flood_hits_the_call_limit(make_sandbox: MakeSandbox) -> None:
    handler = Recorder()
    with make_sandbox(max_calls=5) as sandbox, sandbox.session([PICKUP], handler) as session:
        result = session.execute("while True:\n    pickup('a')")
    assert result.status is ExecutionStatus.call_limit
    assert len(result.calls) == 5
    assert len(handler.calls) == 5


# ---- isolation that every backend promises (check off) ---------------------------------------------


def test_host_environment_is_invisible(unchecked: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEARNACT_TEST_SECRET", "env-secret-7777")
    with unchecked.session() as session:
        result = session.execute("import os\nprint(dict(os.environ))\nprint(open('/proc/self/environ').read())")
    assert result.status is ExecutionStatus.ok
    assert "env-secret-7777" not in result.stdout and "LEARNACT_TEST_SECRET" not in result.stdout


def test_no_connection_reaches_a_listener_on_the_hosts_loopback(backend: str, unchecked: Sandbox) -> None:
    with unchecked.session() as session:
        if backend == "process":
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
        ('os.write(channel.fd_out, b\'{"op": "ready"}\\n\')', "unexpected 'ready'"),
    ],
    ids=["garbage", "unknown-op", "wrong-id", "oversized", "forged-done", "host-only-status", "ready"],
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


# ---- hostile text: what the host keeps of what the sandbox says --------------------------------------


def test_lone_surrogates_in_calls_errors_and_output_do_not_break_the_host(make_sandbox: MakeSandbox) -> None:
    handler = Recorder()
    program = "pickup('\\ud800')\nprint('out \\udfff')\nraise ValueError('bad \\ud800')"
    for checked in (True, False):
        with make_sandbox(check=checked) as sandbox, sandbox.session([PICKUP], handler) as session:
            result = session.execute(program)
        assert result.status is ExecutionStatus.error, (checked, result)
        assert result.error is not None and result.error.type == "ValueError"
        assert result.error.message == "bad \\ud800"
        assert [(c.name, c.args) for c in result.calls] == [("pickup", ["\\ud800"])]
        assert result.stdout == "out \\udfff\n"
        result.model_dump_json().encode("utf-8")
    assert handler.calls == [("pickup", ["\\ud800"])] * 2


def test_huge_arguments_of_many_rejected_calls_keep_the_result_small(make_sandbox: MakeSandbox) -> None:
    def reject(name: str, args: list) -> str:
        raise ArgumentError(f"there is no block called {args[0]}")

    program = "for i in range(200):\n    try:\n        pickup('x' * 250000)\n    except ValueError:\n        pass"
    with make_sandbox(timeout_s=60.0, cpu_s=30) as sandbox, sandbox.session([PICKUP], reject) as session:
        result = session.execute(program)
    config = sandbox.config
    assert result.status is ExecutionStatus.ok and len(result.calls) == 200 == config.max_calls
    # Every byte of the calls is within max_calls_bytes, plus a call's name, field names and marks.
    bound = config.max_calls_bytes + config.max_calls * 200 + 1000
    assert len(result.model_dump_json()) <= bound
    assert all("…[truncated " in call.observation for call in result.calls)


def test_output_is_cut_on_a_character_boundary_at_the_cap(make_sandbox: MakeSandbox) -> None:
    with make_sandbox(max_output_bytes=10) as sandbox, sandbox.session() as session:
        straddling = session.execute("print('abcdefghi' + 'é')")  # é takes bytes 10 and 11
        emoji = session.execute("print('ab' + '😀' * 5)")
    assert straddling.status is ExecutionStatus.output_limit and straddling.stdout == "abcdefghi"
    assert emoji.status is ExecutionStatus.output_limit and emoji.stdout == "ab😀😀"


def test_invalid_utf8_under_the_cap_keeps_the_programs_status(make_sandbox: MakeSandbox) -> None:
    with make_sandbox(check=False, max_output_bytes=10) as sandbox, sandbox.session() as session:
        invalid = session.execute("import os\nos.write(1, b'\\xff' * 8)")
        failing = session.execute("import os\nos.write(1, b'ok\\xc3')\nraise KeyError('k')")
    # Each invalid byte becomes U+FFFD (3 bytes): the text is cut at the cap, the status is the program's.
    assert invalid.status is ExecutionStatus.ok and invalid.stdout == "\ufffd" * 3
    assert failing.status is ExecutionStatus.error and failing.stdout == "ok\ufffd"


def _wait_until(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    end = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.05)
