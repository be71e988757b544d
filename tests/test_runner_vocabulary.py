"""One status vocabulary: the in-sandbox runner (stdlib only: it cannot import learnact) against the
host's ``ExecutionStatus``.

The runner's bare status strings are read from its source, and a real runner process, started as the
process backend starts it, is driven to every status it can claim; each of its messages is parsed
with the protocol's models.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import RestrictedPython

from learnact.actions import policy
from learnact.sandbox import protocol
from learnact.sandbox.protocol import Call, Done, Exec, Load, Ready, Setup
from learnact.sandbox.result import SANDBOX_STATUSES, ExecutionStatus

RUNNER = Path(protocol.__file__).with_name("runner.py")
CAP = 256_000  # the runner's default --max-message-bytes


# ---- the runner's source -------------------------------------------------------------------------


def _strings(node: ast.AST) -> set[str]:
    """The strings an expression is directly made of: a literal, the items of a tuple, list or set of
    them, both arms of a conditional expression."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return set().union(*map(_strings, node.elts))
    if isinstance(node, ast.IfExp):
        return _strings(node.body) | _strings(node.orelse)
    if isinstance(node, ast.BoolOp):
        return set().union(*map(_strings, node.values))
    return set()


def _is_status(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id == "status"


def runner_statuses(tree: ast.Module) -> set[str]:
    """Every string the runner uses as a status: assigned to ``status`` (directly, in a tuple, or as
    what a function assigned to it returns), compared with it, or written as a message's "status"."""
    functions = {f.name: f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)}

    def returned(name: str, index: int) -> set[str]:
        found: set[str] = set()
        for node in ast.walk(functions[name]):
            if isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple):
                found |= _strings(node.value.elts[index])
        return found

    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if _is_status(target):
                    found |= _strings(node.value)
                elif isinstance(target, ast.Tuple):
                    for index, item in enumerate(target.elts):
                        if not _is_status(item):
                            continue
                        if isinstance(node.value, ast.Tuple):
                            found |= _strings(node.value.elts[index])
                        elif isinstance(node.value, ast.Call):
                            func = node.value.func
                            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                            found |= returned(name, index)
        elif isinstance(node, ast.Compare) and _is_status(node.left):
            for comparator in node.comparators:
                found |= _strings(comparator)
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "status":
                    found |= _strings(value)
    return found


def test_every_status_string_of_the_runner_is_a_member_of_the_enum() -> None:
    found = runner_statuses(ast.parse(RUNNER.read_text()))
    members = {status.value for status in ExecutionStatus}
    assert found <= members, f"runner.py uses statuses the host does not know: {found - members}"
    # Both ways: the host lets the sandbox claim exactly what the runner can say.
    assert found == {status.value for status in SANDBOX_STATUSES}


def test_the_scan_sees_every_way_the_runner_writes_a_status() -> None:
    source = """
status, error = "a", None
status = "b" if x else "c"
status, error = self._classify(exc)
if status in ("d", "e"):
    pass
message = {"status": "f"}
def _classify(exc):
    if exc:
        return "g", None
    return status, None
"""
    assert runner_statuses(ast.parse(source)) == set("abcdefg")


# ---- the real runner ------------------------------------------------------------------------------


class RunnerProcess:
    """runner.py as the process backend starts it (isolated Python, its own library directory)."""

    def __init__(self, lib: Path) -> None:
        command = [sys.executable, "-I", "-S", "-u", str(RUNNER), "--lib", str(lib)]
        command += ["--max-message-bytes", str(CAP), "--rlimit", f"as={1 << 30}"]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={}, bufsize=0
        )
        self.messages: list[Ready | Call | Done] = []
        self.next_id = 0

    def read(self) -> Ready | Call | Done:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, f"the runner ended: {self.process.stderr.read().decode() if self.process.stderr else ''}"
        message = protocol.parse(line, CAP)
        self.messages.append(message)
        return message

    def send(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)

    def request(self, code: str, *, load: bool = False, restricted: bool = False, **limits: int) -> Done:
        """Run ``code``, answer its primitive calls, return its done message."""
        self.next_id += 1
        fields = dict(id=self.next_id, code=code, restricted=restricted, nonce=f"n{self.next_id}")
        message = (
            Load(**fields)
            if load
            else Exec(**fields, max_output_bytes=limits.get("max_output_bytes", 64_000), cpu_s=limits.get("cpu_s", 10))
        )
        self.send(protocol.encode(message))
        while isinstance(reply := self.read(), Call):
            self.send(protocol.encode_result(reply.id, f"{reply.name} {reply.args[0]}"))
        assert isinstance(reply, Done) and reply.id == self.next_id and reply.nonce == f"n{self.next_id}"
        return reply

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerProcess]:
    lib = tmp_path_factory.mktemp("runner") / "lib"
    shutil.copytree(Path(RestrictedPython.__file__).parent, lib / "RestrictedPython")
    shutil.copyfile(policy.__file__, lib / "learnact_policy.py")
    process = RunnerProcess(lib)
    assert isinstance(process.read(), Ready)
    process.send(protocol.encode(Setup(primitives=["pickup"])))
    yield process
    process.close()


SWALLOWED_OVERFLOW = "try:\n    print('x' * 100_000)\nexcept BaseException:\n    pass\n"

CASES = {
    "ok": dict(code="print('hi')\n"),
    "ok, after a primitive call": dict(code="print(pickup('b1'))\n"),
    "ok, a restricted action module loaded": dict(code="def f():\n    return 1\n", load=True, restricted=True),
    "error": dict(code="raise ValueError('boom')\n"),
    "error, refused by RestrictedPython": dict(code="_x = 1\n", restricted=True),
    "timeout (the CPU alarm)": dict(code="while True:\n    pass\n", cpu_s=1),
    "output_limit (the write that overflows)": dict(code="print('x' * 100_000)\n", max_output_bytes=100),
    "output_limit (an overflow the program swallowed)": dict(code=SWALLOWED_OVERFLOW, max_output_bytes=100),
    "memory": dict(code="block = bytearray(4 << 30)\n"),
}
EXPECTED = {
    "ok": ExecutionStatus.ok,
    "ok, after a primitive call": ExecutionStatus.ok,
    "ok, a restricted action module loaded": ExecutionStatus.ok,
    "error": ExecutionStatus.error,
    "error, refused by RestrictedPython": ExecutionStatus.error,
    "timeout (the CPU alarm)": ExecutionStatus.timeout,
    "output_limit (the write that overflows)": ExecutionStatus.output_limit,
    "output_limit (an overflow the program swallowed)": ExecutionStatus.output_limit,
    "memory": ExecutionStatus.memory,
}


@pytest.mark.timeout(60)
def test_real_runner_messages_parse_into_the_protocol_models(runner: RunnerProcess) -> None:
    claimed = set()
    for case, request in CASES.items():
        done = runner.request(**request)  # parsed by protocol.parse: the models accept it
        assert done.status is EXPECTED[case], (case, done)
        assert (done.error is None) == (done.status is ExecutionStatus.ok)
        claimed.add(done.status)
    # Every status the host lets the sandbox claim was produced by the real runner.
    assert claimed == SANDBOX_STATUSES
    calls = [m for m in runner.messages if isinstance(m, Call)]
    assert [(c.name, c.args) for c in calls] == [("pickup", ["b1"])]
    assert any(isinstance(m, Done) and m.stdout == "pickup b1\n" for m in runner.messages)
