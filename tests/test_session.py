"""The host's session against a scripted runner: what the host keeps of what a sandbox says, and
how it ends a sandbox that breaks the protocol. Fast, and without an engine.

The runner is untrusted (with the check off the program owns it), so these tests speak the protocol
the way a hostile one may: forged ids and nonces, oversized and malformed messages, floods of calls,
output out of turn, lone surrogates, huge arguments, long errors.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest

from learnact.envs.base import ArgumentError, ParamSpec, PrimitiveSpec, StepOutcome
from learnact.sandbox import ExecutionResult, ExecutionStatus, SandboxConfig, Session
from learnact.sandbox.result import MAX_ERROR_MESSAGE_BYTES, MAX_ERROR_TYPE_BYTES, MAX_TRACEBACK_BYTES
from learnact.sandbox.transport import ExitInfo, Transport

PICKUP = PrimitiveSpec(name="pickup", params=(ParamSpec(name="block"),), doc="Pick a block up.")
Program = Callable[[dict], Generator[Any, dict, None]]
END = object()  # yielded by a program: the runner's end of stream (it exited)
EXITED = ExitInfo(0)


def loaded(request: dict) -> Iterator[dict]:
    """The runner's answer to a load: done, ok."""
    yield done(request)


class FakeRunner(Transport):
    """A runner whose answer to each exec (and load) is a scripted generator.

    The generator gets the request and yields what the runner sends: a message (dict), raw bytes
    (sent as they are) or END. After a ``call`` it receives the host's reply; after anything else
    it goes on at once, so a message after ``done`` is output out of turn.
    """

    def __init__(self, program: Program, exit_info: ExitInfo = EXITED, load: Program = loaded) -> None:
        super().__init__()
        self.program, self.load, self.exit_info = program, load, exit_info
        self.lines: list[bytes] = []
        self.run: Generator[Any, dict, None] | None = None
        self.requests: list[dict] = []  # what the host sent: setup, load, exec
        self.finished: list[bool] = []  # the kill flag of each finish()
        self.closed = False

    def send(self, data: bytes) -> None:
        for raw in data.splitlines():
            message = json.loads(raw)
            self.requests.append(message)
            if message["op"] in ("exec", "load"):
                self.run = (self.program if message["op"] == "exec" else self.load)(message)
                self._advance(None)
            elif message["op"] in ("result", "error"):
                self._advance(message)

    def _advance(self, reply: dict | None) -> None:
        assert self.run is not None
        while True:
            try:
                item = next(self.run) if reply is None else self.run.send(reply)
            except StopIteration:
                return
            reply = None
            if item is END:
                self.lines.append(b"")
                return
            self.lines.append(item if isinstance(item, bytes) else json.dumps(item).encode() + b"\n")
            if isinstance(item, dict) and item["op"] == "call":
                return  # it waits for the host's reply

    def _receive(self, timeout: float) -> bytes | None:
        if self.lines:
            return self.lines.pop(0)
        time.sleep(min(timeout, 0.01))
        return None

    def finish(self, kill: bool) -> ExitInfo:
        self.finished.append(kill)
        self.closed = True
        return self.exit_info

    def close(self) -> None:
        self.closed = True


class Fleet:
    """The session's ``acquire``: a new FakeRunner each time, all of them kept."""

    def __init__(self, program: Program, **runner: Any) -> None:
        self.program, self.runner = program, runner
        self.runners: list[FakeRunner] = []

    def __call__(self) -> FakeRunner:
        self.runners.append(FakeRunner(self.program, **self.runner))
        return self.runners[-1]


def done(request: dict, status: str = "ok", error: dict | None = None, stdout: str = "", **fields: Any) -> dict:
    return {
        "op": "done", "id": request["id"], "nonce": request["nonce"], "status": status, "error": error,
        "stdout": stdout, **fields,
    }  # fmt: skip


def call(request: dict, *args: Any, name: str = "pickup") -> dict:
    return {"op": "call", "id": request["id"], "name": name, "args": list(args)}


def open_session(program: Program, handler=lambda name, args: "fine", runner: dict | None = None, **settings: object):
    """A session on a Fleet of scripted runners, and the fleet."""
    fleet = Fleet(program, **(runner or {}))
    session = Session(SandboxConfig(check=False, **settings), fleet, [PICKUP], handler)
    return session, fleet


def execute(program: Program, handler=lambda name, args: "fine", **settings: object) -> ExecutionResult:
    session, _ = open_session(program, handler, **settings)
    try:
        return session.execute("anything")
    finally:
        session.close()


def reject_quoting(name: str, args: list) -> str:
    raise ArgumentError(f"there is no block called {args[0]}")


# ---- lone surrogates --------------------------------------------------------------------------------


def test_lone_surrogates_from_the_sandbox_become_encodable_text() -> None:
    seen: list[list] = []

    def program(request: dict) -> Iterator[dict]:
        yield {"op": "call", "id": request["id"], "name": "pickup", "args": ["\ud800", ["\udfff"]]}
        error = {"type": "Value\udc80Error", "message": "bad \ud800", "traceback": "tb \udfff"}
        yield done(request, "error", error, stdout="out \ud800\n")

    def handler(name: str, args: list) -> str:
        seen.append(args)
        return "You pick up it."

    result = execute(program, handler)
    assert result.status is ExecutionStatus.error
    assert seen == [["\\ud800", ["\\udfff"]]]  # the environment never sees a lone surrogate either
    assert result.calls[0].args == ["\\ud800", ["\\udfff"]]
    assert result.error is not None
    assert (result.error.type, result.error.message, result.error.traceback) == (
        "Value\\udc80Error",
        "bad \\ud800",
        "tb \\udfff",
    )
    assert result.stdout == "out \\ud800\n"
    result.model_dump_json().encode("utf-8")
    json.dumps(result.model_dump(mode="json"), ensure_ascii=False).encode("utf-8")


# ---- amplification ----------------------------------------------------------------------------------


def result_bound(config: SandboxConfig) -> int:
    """The most bytes of JSON a result may take, from the config's limits (ASCII text, no findings)."""
    per_call_overhead = 200  # field names, quotes, the call's name, a truncation mark
    return (
        config.max_calls_bytes + config.max_calls * per_call_overhead + config.max_output_bytes
        + MAX_ERROR_TYPE_BYTES + MAX_ERROR_MESSAGE_BYTES + MAX_TRACEBACK_BYTES + 1000
    )  # fmt: skip


def test_huge_arguments_of_rejected_calls_are_kept_bounded_and_marked() -> None:
    config = SandboxConfig(check=False)
    big = "x" * 250_000

    def program(request: dict) -> Iterator[dict]:
        for _ in range(config.max_calls):
            yield {"op": "call", "id": request["id"], "name": "pickup", "args": [big]}
        yield done(request)

    result = execute(program, reject_quoting)
    assert result.status is ExecutionStatus.ok and len(result.calls) == config.max_calls
    size = len(result.model_dump_json())
    assert size <= result_bound(config), size
    first = result.calls[0]
    assert len(json.dumps(first.args)) <= config.max_call_bytes + 10
    assert len(first.observation.encode()) <= config.max_call_bytes
    assert "…[truncated " in first.args[0] and "…[truncated " in first.observation
    assert first.args[0].startswith("xxxx") and first.observation.startswith("ValueError: there is no block")
    # Past the total, a call keeps its name; what it carried is marked as dropped.
    assert result.calls[-1].name == "pickup" and "…[truncated " in result.calls[-1].observation


def test_many_arguments_and_nested_ones_are_bounded_per_call() -> None:
    config = SandboxConfig(check=False)

    def program(request: dict) -> Iterator[dict]:
        yield {"op": "call", "id": request["id"], "name": "pickup", "args": ["a"] * 30_000}
        yield {"op": "call", "id": request["id"], "name": "pickup", "args": [[["y" * 100_000]], {"k": "z" * 50_000}, 7]}
        yield {"op": "call", "id": request["id"], "name": "pickup", "args": ["small", 1, [2, "three"]]}
        yield done(request)

    result = execute(program)
    for call in result.calls[:2]:
        assert len(json.dumps(call.args, ensure_ascii=False).encode()) <= config.max_call_bytes + 100
    assert result.calls[1].args[2] == 7
    assert result.calls[2].args == ["small", 1, [2, "three"]]  # small arguments are kept as they are


def test_long_errors_are_bounded_and_marked() -> None:
    def program(request: dict) -> Iterator[dict]:
        error = {"type": "E" * 10_000, "message": "m" * 100_000, "traceback": "t" * 100_000}
        yield done(request, "error", error)

    result = execute(program)
    assert result.error is not None
    assert len(result.error.type.encode()) <= MAX_ERROR_TYPE_BYTES
    assert len(result.error.message.encode()) <= MAX_ERROR_MESSAGE_BYTES
    assert len(result.error.traceback.encode()) <= MAX_TRACEBACK_BYTES
    assert "…[truncated " in result.error.message and "…[truncated " in result.error.traceback


# ---- the output cap ---------------------------------------------------------------------------------


def test_output_over_the_cap_is_cut_and_reported_as_output_limit_not_crashed() -> None:
    def program(request: dict) -> Iterator[dict]:
        yield done(request, stdout="é" * 100)  # 200 bytes against a cap of 51

    result = execute(program, max_output_bytes=51)
    assert result.status is ExecutionStatus.output_limit
    assert result.stdout == "é" * 25  # cut on a character boundary, within the cap
    assert result.error is not None and result.error.type == "OutputLimit"


def test_deeply_nested_arguments_are_kept_as_a_mark_and_the_result_serialises() -> None:
    nested: list = ["x"]
    for _ in range(500):
        nested = [nested]

    def program(request: dict) -> Iterator[dict]:
        yield {"op": "call", "id": request["id"], "name": "pickup", "args": [nested, "b"]}
        yield done(request)

    result = execute(program)
    assert result.calls[0].args[1] == "b" and "…[truncated " in result.calls[0].args[0]
    json.loads(result.model_dump_json())


# ---- the protocol: what ends an execution as crashed ------------------------------------------------


def crashed_by(program: Program, **settings: object) -> tuple[ExecutionResult, Fleet, list]:
    """Run ``program``, then a plain execution: the result of the first, the fleet, the handler's calls."""
    seen: list = []

    def handler(name: str, args: list) -> str:
        seen.append((name, args))
        return "fine"

    session, fleet = open_session(program, handler, **settings)
    result = session.execute("anything")
    assert fleet.runners[0].finished == [True] and fleet.runners[0].closed  # killed, then removed
    return result, fleet, seen


def test_a_call_with_another_requests_id_is_never_performed() -> None:
    def program(request: dict) -> Iterator[dict]:
        yield {"op": "call", "id": request["id"] + 1, "name": "pickup", "args": ["a"]}

    result, _, seen = crashed_by(program)
    assert result.status is ExecutionStatus.crashed and result.error is not None
    assert result.error.message == "call with id 2 while request 1 is in progress"
    assert seen == [] and result.calls == []


@pytest.mark.parametrize("forgery", [{"nonce": "guess"}, {"id": 7}], ids=["nonce", "id"])
def test_a_done_with_a_forged_nonce_or_id_ends_the_execution_as_crashed(forgery: dict) -> None:
    def program(request: dict) -> Iterator[dict]:
        yield call(request, "a")
        yield {**done(request), **forgery}

    result, _, seen = crashed_by(program)
    assert result.status is ExecutionStatus.crashed and result.error is not None
    assert "a forged or stale message" in result.error.message
    assert seen == [("pickup", ["a"])] and [c.args for c in result.calls] == [["a"]]  # what it did is kept


@pytest.mark.parametrize(
    "data",
    [b"x" * 1001 + b"\n", b"x" * 5000, b'{"op": "call", "id": 1, "args": ["' + b"y" * 2000 + b'"]}\n'],
    ids=["line", "no-newline", "call"],
)
def test_an_oversized_message_ends_the_execution_as_crashed(data: bytes) -> None:
    def program(request: dict) -> Iterator[bytes]:
        yield data

    result, _, seen = crashed_by(program, max_message_bytes=1000)
    assert result.status is ExecutionStatus.crashed and result.error is not None
    assert (
        result.error.message.startswith("protocol violation: message of ") and "exceeds the cap" in result.error.message
    )
    assert seen == []


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"not json\n", "malformed"),
        (b'{"op": "launch"}\n', "unknown op"),
        (b'{"op": "call", "id": 1, "name": "pick up", "args": []}\n', "protocol violation"),
        (b'{"op": "ready"}\n', "unexpected 'ready' during an execution"),
    ],
    ids=["malformed-json", "unknown-op", "bad-name", "unexpected-ready"],
)
def test_a_malformed_or_unexpected_message_ends_the_execution_as_crashed(data: bytes, reason: str) -> None:
    def program(request: dict) -> Iterator[bytes]:
        yield data

    result, _, seen = crashed_by(program)
    assert result.status is ExecutionStatus.crashed and result.error is not None
    assert reason in result.error.message and result.error.type == "SandboxError"
    assert seen == []


# ---- limits -----------------------------------------------------------------------------------------


def test_one_call_more_than_the_limit_ends_the_execution_as_call_limit() -> None:
    def program(request: dict) -> Iterator[dict]:
        while True:
            yield call(request, "a")

    result, _, seen = crashed_by(program, max_calls=3)
    assert result.status is ExecutionStatus.call_limit and result.error is not None
    assert result.error.message == "more than 3 primitive calls in one execution"
    assert len(seen) == len(result.calls) == 3


def test_the_wall_clock_kills_a_silent_sandbox_and_the_handlers_time_is_not_counted() -> None:
    def slow(name: str, args: list) -> str:
        time.sleep(0.3)
        return "slow"

    def calls_twice(request: dict) -> Iterator[dict]:
        yield call(request, "a")
        yield call(request, "b")
        yield done(request)

    def silent(request: dict) -> Iterator[dict]:
        return
        yield

    assert execute(calls_twice, slow, timeout_s=0.2).status is ExecutionStatus.ok  # 0.6 s in the handler
    session, fleet = open_session(silent, timeout_s=0.2)
    result = session.execute("anything")
    assert result.status is ExecutionStatus.timeout and result.error is not None
    assert result.error.message == "wall-clock limit of 0.2 s exceeded; the sandbox was killed"
    assert fleet.runners[0].finished == [True]


def test_a_sandbox_killed_for_its_memory_while_the_clock_ran_out_is_reported_as_memory() -> None:
    def silent(request: dict) -> Iterator[dict]:
        return
        yield

    session, _ = open_session(silent, runner=dict(exit_info=ExitInfo(None, oom_killed=True)), timeout_s=0.1)
    result = session.execute("anything")
    assert result.status is ExecutionStatus.memory and result.error is not None
    assert result.error.message == "memory limit of 256 MiB exceeded; the sandbox was killed"


# ---- a sandbox that went away: its ExitInfo says why ---------------------------------------------------


@pytest.mark.parametrize(
    "exit_info, status, message",
    [
        (
            ExitInfo(7, diagnostics="runner: boom\n"),
            ExecutionStatus.crashed,
            "exited unexpectedly (exit code 7): runner: boom",
        ),
        (ExitInfo(None, signal=11), ExecutionStatus.crashed, "exited unexpectedly (killed by SIGSEGV)"),
        (ExitInfo(None), ExecutionStatus.crashed, "exited unexpectedly (exit status unknown)"),
        (ExitInfo(137, oom_killed=True), ExecutionStatus.memory, "memory limit of 256 MiB exceeded"),
        (ExitInfo(None, signal=24, cpu_limited=True), ExecutionStatus.timeout, "CPU time limit was exceeded"),
    ],
    ids=["exit-code", "signal", "unknown", "oom", "cpu"],
)
def test_a_sandbox_that_ended_by_itself_is_described_by_its_exit(
    exit_info: ExitInfo, status: ExecutionStatus, message: str
) -> None:
    def program(request: dict) -> Iterator[Any]:
        yield call(request, "a")
        yield END

    session, fleet = open_session(program, runner=dict(exit_info=exit_info))
    result = session.execute("anything")
    assert result.status is status and result.error is not None
    assert message in result.error.message
    assert fleet.runners[0].finished == [False]  # not killed: it ended by itself
    assert [c.args for c in result.calls] == [["a"]]


# ---- between executions ---------------------------------------------------------------------------------


def test_output_out_of_turn_after_done_gets_a_fresh_sandbox_with_the_actions_reloaded() -> None:
    executions: list[int] = []

    def program(request: dict) -> Iterator[dict]:
        executions.append(request["id"])
        yield done(request)
        if len(executions) == 1:
            yield call(request, "stray")  # a thread the program left speaks after its execution

    seen: list = []
    session, fleet = open_session(program, lambda name, args: seen.append(args) or "fine")
    assert session.load_actions("def grab(block):\n    return pickup(block)\n").ok
    first, second = session.execute("first"), session.execute("second")
    assert first.ok and second.ok and seen == []
    assert len(fleet.runners) == 2 and fleet.runners[0].closed and not fleet.runners[1].closed
    loads = [r for r in fleet.runners[1].requests if r["op"] == "load"]
    assert [r["code"] for r in loads] == ["def grab(block):\n    return pickup(block)\n"]
    assert [r["op"] for r in fleet.runners[1].requests] == ["setup", "load", "exec"]
    assert len({r["id"] for runner in fleet.runners for r in runner.requests if "id" in r}) == 4  # ids never reused


def test_a_sandbox_with_threads_left_is_not_used_again() -> None:
    def program(request: dict) -> Iterator[dict]:
        yield done(request, threads_left=1)

    session, fleet = open_session(program)
    assert session.execute("one").ok and session.execute("two").ok
    assert len(fleet.runners) == 2 and fleet.runners[0].closed


def test_a_failed_reload_into_a_fresh_sandbox_ends_the_execution_as_crashed() -> None:
    loads: list[dict] = []

    def load(request: dict) -> Iterator[dict]:
        loads.append(request)
        if len(loads) == 1:
            yield done(request)
        else:
            yield done(request, "error", {"type": "MemoryError", "message": "no room", "traceback": ""})

    def program(request: dict) -> Iterator[Any]:
        yield END

    session, fleet = open_session(program, runner=dict(load=load))
    assert session.load_actions("x = 1\n").ok
    assert session.execute("dies").status is ExecutionStatus.crashed
    result = session.execute("again")
    assert result.status is ExecutionStatus.crashed and result.error is not None
    assert result.error.message.startswith("reloading the action modules into a fresh sandbox failed")
    assert fleet.runners[1].finished == [True]


def test_a_failing_handler_propagates_and_its_sandbox_is_not_used_again() -> None:
    def program(request: dict) -> Iterator[dict]:
        yield call(request, "a")
        yield done(request)

    failures = [KeyError("a bug on the host")]

    def handler(name: str, args: list) -> str:
        if failures:
            raise failures.pop()
        return "fine"

    session, fleet = open_session(program, handler)
    with pytest.raises(KeyError):
        session.execute("anything")
    assert fleet.runners[0].closed  # it waits for a reply that will never come
    assert session.execute("anything").ok and len(fleet.runners) == 2


def test_a_handler_returning_no_text_is_a_type_error() -> None:
    def program(request: dict) -> Iterator[dict]:
        yield call(request, "a")

    session, fleet = open_session(program, lambda name, args: None)
    with pytest.raises(TypeError, match="returned NoneType for pickup: not a str, nor an object with observation"):
        session.execute("anything")
    assert fleet.runners[0].closed


def test_a_handler_may_answer_the_environments_verdict_with_the_observation() -> None:
    def program(request: dict) -> Iterator[dict]:
        yield call(request, "a")
        yield call(request, "b")
        yield done(request)

    verdicts = {"a": StepOutcome(observation="no effect", valid=False, done=False, success=False, progress=0.0)}
    session, _ = open_session(program, lambda name, args: verdicts.get(args[0], "fine"))
    result = session.execute("anything")
    assert [(c.observation, c.valid) for c in result.calls] == [("no effect", False), ("fine", True)]


def test_the_call_log_keeps_every_call_but_bounds_its_bytes() -> None:
    def program(request: dict) -> Iterator[dict]:
        for _ in range(50):
            yield call(request, "z" * 500)
        yield done(request)

    result = execute(program, lambda name, args: "o" * 500, max_call_bytes=100, max_calls_bytes=2000)
    assert len(result.calls) == 50 and all(c.name == "pickup" for c in result.calls)
    kept = sum(len(json.dumps(c.args)) + len(c.observation.encode()) for c in result.calls)
    assert kept <= 2000 + 50 * 60  # the total, plus a mark per cut argument and observation
    assert "…[truncated " in result.calls[0].observation and "…[truncated " in result.calls[-1].observation
