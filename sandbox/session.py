"""A host-side session: action modules loaded once, agent snippets (or programs) executed many times.

The session is the host's half of the protocol. It checks code statically, sends requests, reads
and validates every reply, performs primitive calls through the handler (counting them), and
enforces the wall-clock limit from outside by killing the sandbox. Ids: every load/exec request
gets a new id; the sandbox's calls and its ``done`` must carry the id of the request in progress,
and ``done`` must echo the request's nonce (a blind forgery from unchecked code is caught).

When a sandbox is killed or breaks the protocol, the result says so and the next request starts a
fresh sandbox with the same action modules loaded again: the environment's state lives on the
host, so nothing of the episode is lost (variables of earlier agent snippets are).
"""

from __future__ import annotations

import ast
import json
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from learnact.actions.models import CodeKind, Finding, Severity
from learnact.actions.text import cut_utf8, truncated, truncation_mark
from learnact.envs.base import ArgumentError, PrimitiveSpec
from learnact.sandbox import protocol
from learnact.sandbox.config import SandboxConfig
from learnact.sandbox.protocol import Call, CallError, Done, Exec, Load, ProtocolError, Setup
from learnact.sandbox.result import ErrorInfo, ExecutionResult, ExecutionStatus
from learnact.sandbox.transport import ExitInfo, Transport


class Reply(Protocol):
    """What a handler may answer besides a plain observation: the observation and whether the call was valid
    (the environment's verdict; :class:`learnact.envs.StepOutcome` is one)."""

    observation: str
    valid: bool


# Performs a primitive call on the host: a str is the observation of a valid call; a Reply says whether it was.
Handler = Callable[[str, list], "str | Reply"]
MAX_KEPT_DEPTH = 32  # nesting of an argument kept in a result (deeper JSON breaks serializers)


class Session:
    """Use through ``Sandbox.session(...)``; not thread-safe (one episode, one thread)."""

    def __init__(
        self,
        config: SandboxConfig,
        acquire: Callable[[], Transport],
        primitives: Sequence[PrimitiveSpec],
        handler: Handler,
    ) -> None:
        self.config = config
        self._acquire = acquire
        self.primitives = list(primitives)
        self._handler = handler
        self._transport: Transport | None = None
        self._actions: list[str] = []  # action modules loaded so far, reloaded into a fresh sandbox
        self._known: set[str] = set()  # functions the checker may accept calls to
        self._defined: set[str] = set()  # other names earlier code may have left in the namespace
        self._next_id = 0

    # ---- public API -------------------------------------------------------------------------------

    def load_actions(self, code: str) -> ExecutionResult:
        """Check an action module, then load it into the session's namespace (once)."""
        started = time.monotonic()
        findings = self._check(code, CodeKind.action_module)
        if _has_errors(findings):
            return ExecutionResult(status=ExecutionStatus.rejected, findings=findings, duration_s=_since(started))
        result = self._request(code, load=True, findings=findings, started=started)
        if result.ok:
            self._actions.append(code)
            self._known |= _defined_functions(code)
            self._defined |= _bound_names(code)
        return result

    def execute(self, code: str, kind: CodeKind = CodeKind.agent_snippet) -> ExecutionResult:
        """Check an agent snippet (or, with ``kind=CodeKind.program``, a program: helper functions and
        the top-level calls that use them), then run it; it may call primitives and loaded actions."""
        kind = CodeKind(kind)
        if kind is CodeKind.action_module:
            raise ValueError("action modules are loaded with load_actions(), not executed")
        started = time.monotonic()
        findings = self._check(code, kind)
        if _has_errors(findings):
            return ExecutionResult(status=ExecutionStatus.rejected, findings=findings, duration_s=_since(started))
        result = self._request(code, load=False, findings=findings, started=started)
        if result.status in (ExecutionStatus.ok, ExecutionStatus.error) and self._transport is not None:
            self._known |= _defined_functions(code)  # functions an agent defined stay callable
            self._defined |= _bound_names(code)  # and so do its variables and imports
        return result

    def close(self) -> None:
        self._retire()

    # ---- internals --------------------------------------------------------------------------------

    def _check(self, code: str, kind: CodeKind) -> list[Finding]:
        if not self.config.check:
            return []
        from learnact.actions import check  # the checker lives in a lower room; imported when used

        return list(check(code, kind, self.primitives, self._known, defined=self._defined))

    def _request(self, code: str, load: bool, findings: list[Finding], started: float) -> ExecutionResult:
        """One request, from a ready sandbox to its result; a sandbox that stopped it is ended here."""
        execution: _Execution | None = None
        try:
            transport = self._ready_transport()
            execution = self._execution(code, load)
            done = self._run(transport, execution)
        except _Stop as stop:
            status, error = self._end(stop)
            calls = execution.calls.kept if execution is not None else []
            return ExecutionResult(
                status=status, findings=findings, error=error, calls=calls, duration_s=_since(started)
            )
        except BaseException:
            self._retire()  # a host-side failure or an interrupt: the sandbox is in an unknown state
            raise
        if done.threads_left:
            self._retire()  # its threads must not act during a later execution
        status, error, stdout = ExecutionStatus(done.status), done.error, done.stdout
        if len(stdout) > self.config.max_output_bytes // 4 and len(stdout.encode()) > self.config.max_output_bytes:
            # Only a runner that the program took over sends more than the cap: the output was too long.
            stdout = cut_utf8(stdout, self.config.max_output_bytes)
            if status in (ExecutionStatus.ok, ExecutionStatus.error):
                status = ExecutionStatus.output_limit
                error = ErrorInfo(type="OutputLimit", message=f"output exceeded {self.config.max_output_bytes} bytes")
        return ExecutionResult(
            status=status,
            findings=findings,
            error=error,
            calls=execution.calls.kept,
            stdout=stdout,
            duration_s=_since(started),
        )

    def _ready_transport(self) -> Transport:
        """The session's sandbox; a fresh one (actions reloaded) after a kill or stray output."""
        if self._transport is not None and self._transport.has_unread():
            self._retire()  # it spoke out of turn (or died) after its last execution
        if self._transport is not None:
            return self._transport
        self._transport = transport = self._acquire()
        self._send(transport, protocol.encode(Setup(primitives=[p.name for p in self.primitives])))
        for module in self._actions:
            done = self._run(transport, self._execution(module, load=True))
            if done.status is not ExecutionStatus.ok:
                raise _Violation(f"reloading the action modules into a fresh sandbox failed: {done.error}")
        return transport

    def _execution(self, code: str, load: bool) -> _Execution:
        self._next_id += 1
        return _Execution(self._next_id, code, load, self.config)

    def _run(self, transport: Transport, execution: _Execution) -> Done:
        """Send the request, then perform its primitive calls until the sandbox says it is done.

        Raises _Stop when the execution cannot go on; the sandbox is then still there, to be ended.
        """
        self._send(transport, protocol.encode(execution.request))
        deadline = time.monotonic() + self.config.timeout_s
        while True:
            message = self._receive(transport, deadline)
            if isinstance(message, Done):
                if message.id != execution.id or message.nonce != execution.nonce:
                    raise _Violation(
                        f"'done' for request {message.id} with a wrong nonce or id (request {execution.id} "
                        "is in progress): a forged or stale message"
                    )
                return message
            if not isinstance(message, Call):
                raise _Violation("unexpected 'ready' during an execution")
            if message.id != execution.id:
                raise _Violation(f"call with id {message.id} while request {execution.id} is in progress")
            if len(execution.calls) >= self.config.max_calls:
                raise _CallLimit()
            handler_started = time.monotonic()
            reply = self._perform(message, execution.calls)
            deadline += time.monotonic() - handler_started  # host time is not the program's
            self._send(transport, reply)

    def _perform(self, message: Call, calls: _CallLog) -> bytes:
        """Perform one call through the handler; the encoded reply."""
        try:
            reply = self._handler(message.name, list(message.args))
        except ArgumentError as exc:
            calls.add(message.name, message.args, f"ValueError: {exc}", valid=False)
            return protocol.encode(CallError(id=message.id, message=str(exc)))
        if isinstance(reply, str):
            observation, valid = reply, True
        else:
            observation, valid = getattr(reply, "observation", None), getattr(reply, "valid", None)
            if not isinstance(observation, str) or not isinstance(valid, bool):
                raise TypeError(
                    f"the primitive handler returned {type(reply).__name__} for {message.name}: not a str, nor an"
                    " object with observation (str) and valid (bool)"
                )
        calls.add(message.name, message.args, observation, valid)
        return protocol.encode_result(message.id, observation)  # the hot path: no record built

    def _send(self, transport: Transport, data: bytes) -> None:
        try:
            transport.send(data)
        except OSError:
            raise _Gone() from None

    def _receive(self, transport: Transport, deadline: float) -> protocol.Ready | Call | Done:
        try:
            line = transport.read_line(deadline, self.config.max_message_bytes)
        except TimeoutError:
            raise _Timeout() from None
        except ProtocolError as exc:
            raise _Violation(f"protocol violation: {exc}") from None
        if line is None:
            raise _Gone()
        try:
            return protocol.parse(line, self.config.max_message_bytes)
        except ProtocolError as exc:
            raise _Violation(f"protocol violation: {exc}") from None

    def _end(self, stop: _Stop) -> tuple[ExecutionStatus, ErrorInfo]:
        """End the session's sandbox for ``stop`` (killed, unless it ended by itself) and say what the
        result reports, from why it stopped and how it ended."""
        assert self._transport is not None
        exit_info = self._transport.finish(kill=stop.kill)
        self._retire()
        return stop.outcome(exit_info, self.config)

    def _retire(self) -> None:
        if self._transport is not None:
            transport, self._transport = self._transport, None
            transport.close()
        # What earlier snippets defined died with the sandbox; a fresh one holds the action modules only.
        self._known = set().union(*map(_defined_functions, self._actions))
        self._defined = set().union(*map(_bound_names, self._actions))


class _Execution:
    """One load or exec request in progress: the id and nonce that the sandbox's messages must carry,
    and the primitive calls performed for it."""

    def __init__(self, request_id: int, code: str, load: bool, config: SandboxConfig) -> None:
        self.id = request_id
        self.nonce = secrets.token_hex(8)
        self.calls = _CallLog(config)
        self.request: Load | Exec
        if load:
            self.request = Load(id=request_id, code=code, restricted=config.check, nonce=self.nonce)
        else:
            self.request = Exec(
                id=request_id,
                code=code,
                restricted=config.check,
                max_output_bytes=config.max_output_bytes,
                cpu_s=config.cpu_s,
                nonce=self.nonce,
            )


class _Stop(Exception):
    """Why an execution cannot go on. The request loop raises it with the sandbox still there;
    ``Session._end`` ends the sandbox and asks ``outcome`` what the result reports."""

    kill = True  # whether the sandbox is to be killed; False: it ended by itself

    def outcome(self, exit_info: ExitInfo, config: SandboxConfig) -> tuple[ExecutionStatus, ErrorInfo]:
        raise NotImplementedError


class _Violation(_Stop):
    """The sandbox broke the protocol (or could not be set up again): crashed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def outcome(self, exit_info: ExitInfo, config: SandboxConfig) -> tuple[ExecutionStatus, ErrorInfo]:
        return ExecutionStatus.crashed, ErrorInfo(type="SandboxError", message=self.reason)


class _CallLimit(_Stop):
    def outcome(self, exit_info: ExitInfo, config: SandboxConfig) -> tuple[ExecutionStatus, ErrorInfo]:
        message = f"more than {config.max_calls} primitive calls in one execution"
        return ExecutionStatus.call_limit, ErrorInfo(type="CallLimit", message=message)


class _Timeout(_Stop):
    """The wall clock ran out (a sandbox that is out of memory may hang until then)."""

    def outcome(self, exit_info: ExitInfo, config: SandboxConfig) -> tuple[ExecutionStatus, ErrorInfo]:
        if exit_info.oom_killed:
            return _memory(config)
        message = f"wall-clock limit of {config.timeout_s:g} s exceeded; the sandbox was killed"
        return ExecutionStatus.timeout, ErrorInfo(type="TimeoutError", message=message)


class _Gone(_Stop):
    """The sandbox went away by itself: its exit says why, as precisely as the backend can tell."""

    kill = False

    def outcome(self, exit_info: ExitInfo, config: SandboxConfig) -> tuple[ExecutionStatus, ErrorInfo]:
        if exit_info.oom_killed:
            return _memory(config)
        if exit_info.cpu_limited:
            message = "the session's CPU time limit was exceeded"
            return ExecutionStatus.timeout, ErrorInfo(type="TimeoutError", message=message)
        diagnostics = exit_info.diagnostics.strip()
        detail = f": {diagnostics[-500:]}" if diagnostics else ""
        message = f"the sandbox exited unexpectedly ({exit_info.describe()}){detail}"
        return ExecutionStatus.crashed, ErrorInfo(type="SandboxError", message=message)


def _memory(config: SandboxConfig) -> tuple[ExecutionStatus, ErrorInfo]:
    message = f"memory limit of {config.memory_mb} MiB exceeded; the sandbox was killed"
    return ExecutionStatus.memory, ErrorInfo(type="MemoryError", message=message)


class _CallLog:
    """The primitive calls of one execution as its result keeps them: bounded per call and in total.

    A call's arguments and its observation are each kept up to ``max_call_bytes`` and all calls' up to
    ``max_calls_bytes``; what is cut is marked. Kept as PrimitiveCall fields: the result validates
    them in one pass, which is cheaper than a record per call on the way of every round trip.
    """

    def __init__(self, config: SandboxConfig) -> None:
        self.kept: list[dict] = []
        self._per_call = config.max_call_bytes
        self._left = config.max_calls_bytes

    def __len__(self) -> int:
        return len(self.kept)

    def add(self, name: str, args: list[Any], observation: str, valid: bool) -> None:
        args, size = _kept_args(args, min(self._per_call, self._left))
        self._left = max(self._left - size, 0)
        observation = truncated(observation, min(self._per_call, self._left))
        self._left = max(self._left - len(observation.encode()), 0)
        self.kept.append({"name": name, "args": args, "observation": observation, "valid": valid})


def _kept_args(args: list[Any], limit: int) -> tuple[list[Any], int]:
    """``args`` in about ``limit`` bytes of JSON, and their size: arguments too large or nested too
    deep are replaced by (the start of) their JSON text, cut and marked."""
    size, depth = _measure(args)
    if size <= limit and depth <= MAX_KEPT_DEPTH:
        return args, size
    if limit < 100:
        mark = truncation_mark(size)
        return [mark], len(mark.encode()) + 4
    count = min(len(args), limit // 100)  # each kept argument gets a share of at least 100 bytes
    share = limit // max(count, 1) - 4
    kept: list[Any] = []
    for arg in args[:count]:
        arg_size, arg_depth = _measure(arg)
        if arg_size <= share and arg_depth <= MAX_KEPT_DEPTH - 1:
            kept.append(arg)
        elif isinstance(arg, str):
            kept.append(truncated(arg, share))
        elif arg_depth <= MAX_KEPT_DEPTH:
            kept.append(truncated(json.dumps(arg, ensure_ascii=False), share))
        else:
            kept.append(truncation_mark(arg_size))
    if count < len(args):
        kept.append(f"…[{len(args) - count} more arguments]")
    return kept, _measure(kept)[0]


def _measure(value: Any) -> tuple[int, int]:
    """Roughly the bytes of ``value`` as JSON, and how deep it nests; without recursion."""
    size, deepest = 0, 0
    stack = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(node, str):
            size += len(node.encode("utf-8", "backslashreplace")) + 3
        elif isinstance(node, list):
            size += 2 + len(node)
            stack.extend((item, depth + 1) for item in node)
        elif isinstance(node, dict):
            size += 2 + len(node)
            for key, item in node.items():
                stack.append((key, depth + 1))
                stack.append((item, depth + 1))
        else:
            size += len(str(node)) + 1
    return size, deepest


def _has_errors(findings: list[Finding]) -> bool:
    return any(f.severity is Severity.error for f in findings)


def _since(started: float) -> float:
    return round(time.monotonic() - started, 6)


def _bound_names(code: str) -> frozenset[str]:
    from learnact.actions import bound_names

    return bound_names(code)


def _defined_functions(code: str) -> set[str]:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    return {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
