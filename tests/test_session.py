"""The host's session against a scripted runner: what the host keeps of what a sandbox says.

The runner is untrusted (with the check off the program owns it), so these tests speak the protocol
the way a hostile one may: lone surrogates, oversized output, huge arguments, long errors.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator, Iterator

from learnact.envs.base import ArgumentError, ParamSpec, PrimitiveSpec
from learnact.sandbox import ExecutionResult, ExecutionStatus, SandboxConfig, Session
from learnact.sandbox.result import MAX_ERROR_MESSAGE_BYTES, MAX_ERROR_TYPE_BYTES, MAX_TRACEBACK_BYTES
from learnact.sandbox.transport import ExitInfo, Transport

PICKUP = PrimitiveSpec(name="pickup", params=(ParamSpec(name="block"),), doc="Pick a block up.")
Program = Callable[[dict], Generator[dict, dict, None]]


class FakeRunner(Transport):
    """A runner whose answer to each exec is a scripted generator of messages.

    The generator yields the messages to send; after a ``call`` it receives the host's reply.
    """

    def __init__(self, program: Program) -> None:
        super().__init__()
        self.program = program
        self.lines: list[bytes] = []
        self.run: Generator[dict, dict, None] | None = None

    def send(self, data: bytes) -> None:
        for raw in data.splitlines():
            message = json.loads(raw)
            if message["op"] == "exec":
                self.run = self.program(message)
                self._next(None)
            elif message["op"] in ("result", "error"):
                self._next(message)

    def _next(self, reply: dict | None) -> None:
        assert self.run is not None
        try:
            message = next(self.run) if reply is None else self.run.send(reply)
        except StopIteration:
            return
        self.lines.append(json.dumps(message).encode())

    def _receive(self, timeout: float) -> bytes | None:
        if self.lines:
            return self.lines.pop(0) + b"\n"
        time.sleep(min(timeout, 0.01))
        return None

    def finish(self, kill: bool) -> ExitInfo:
        return ExitInfo(0)

    def close(self) -> None:
        pass


def done(request: dict, status: str = "ok", error: dict | None = None, stdout: str = "") -> dict:
    return {
        "op": "done", "id": request["id"], "nonce": request["nonce"], "status": status, "error": error,
        "stdout": stdout,
    }  # fmt: skip


def execute(program: Program, handler=lambda name, args: "fine", **settings: object) -> ExecutionResult:
    config = SandboxConfig(check=False, **settings)
    session = Session(config, lambda: FakeRunner(program), [PICKUP], handler)
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
