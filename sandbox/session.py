"""A host-side session: action modules loaded once, agent snippets executed many times.

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
from typing import Any

from learnact.actions.models import CodeKind, Finding, Severity
from learnact.actions.text import cut_utf8, truncated, truncation_mark
from learnact.envs.base import ArgumentError, PrimitiveSpec
from learnact.sandbox import protocol
from learnact.sandbox.config import SandboxConfig
from learnact.sandbox.protocol import Call, CallError, Done, Exec, Load, ProtocolError, Setup
from learnact.sandbox.result import ErrorInfo, ExecutionResult, ExecutionStatus
from learnact.sandbox.transport import Transport

Handler = Callable[[str, list], str]
SIGXCPU = 24
MAX_KEPT_DEPTH = 32  # nesting of an argument kept in a result (deeper JSON breaks serializers)


class _Killed(Exception):
    """The execution ended with the sandbox killed; carries the result to report."""

    def __init__(self, status: ExecutionStatus, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error = status, ErrorInfo(type=error_type, message=message)


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

    def execute(self, code: str) -> ExecutionResult:
        """Check an agent snippet, then run it; it may call primitives and loaded actions."""
        started = time.monotonic()
        findings = self._check(code, CodeKind.agent_snippet)
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
        calls = _CallLog(self.config)
        try:
            transport = self._ready_transport()
            done = self._run(transport, code, load, calls)
        except _Killed as killed:
            self._retire()
            return ExecutionResult(
                status=killed.status, findings=findings, error=killed.error, calls=calls.kept,
                duration_s=_since(started),
            )  # fmt: skip
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
            status=status, findings=findings, error=error, calls=calls.kept, stdout=stdout, duration_s=_since(started)
        )

    def _ready_transport(self) -> Transport:
        """The session's sandbox; a fresh one (actions reloaded) after a kill or stray output."""
        if self._transport is not None and self._transport.has_unread():
            self._retire()  # it spoke out of turn (or died) after its last execution
        if self._transport is not None:
            return self._transport
        self._transport = self._acquire()
        self._transport.send(protocol.encode(Setup(primitives=[p.name for p in self.primitives])))
        for module in self._actions:
            done = self._run(self._transport, module, True, _CallLog(self.config))
            if done.status != "ok":
                raise _Killed(
                    ExecutionStatus.crashed,
                    "SandboxError",
                    f"reloading the action modules into a fresh sandbox failed: {done.error}",
                )
        return self._transport

    def _run(self, transport: Transport, code: str, load: bool, calls: _CallLog) -> Done:
        config = self.config
        self._next_id += 1
        request_id, nonce = self._next_id, secrets.token_hex(8)
        restricted = config.check
        if load:
            request: Load | Exec = Load(id=request_id, code=code, restricted=restricted, nonce=nonce)
        else:
            request = Exec(
                id=request_id,
                code=code,
                restricted=restricted,
                max_output_bytes=config.max_output_bytes,
                cpu_s=config.cpu_s,
                nonce=nonce,
            )
        self._send(transport, protocol.encode(request))
        deadline = time.monotonic() + config.timeout_s
        while True:
            message = self._receive(transport, deadline)
            if isinstance(message, Call):
                if message.id != request_id:
                    raise self._crash(transport, f"call with id {message.id} while request {request_id} is in progress")
                if len(calls) >= config.max_calls:
                    transport.finish(kill=True)
                    raise _Killed(
                        ExecutionStatus.call_limit,
                        "CallLimit",
                        f"more than {config.max_calls} primitive calls in one execution",
                    )
                handler_started = time.monotonic()
                reply = self._perform(message, calls)
                deadline += time.monotonic() - handler_started  # host time is not the program's
                self._send(transport, reply)
            elif isinstance(message, Done):
                if message.id != request_id or message.nonce != nonce:
                    raise self._crash(
                        transport,
                        f"'done' for request {message.id} with a wrong nonce or id (request {request_id} "
                        "is in progress): a forged or stale message",
                    )
                return message
            else:
                raise self._crash(transport, "unexpected 'ready' during an execution")

    def _perform(self, message: Call, calls: _CallLog) -> bytes:
        """Perform one call through the handler; the encoded reply."""
        try:
            observation = self._handler(message.name, list(message.args))
        except ArgumentError as exc:
            calls.add(message.name, message.args, f"ValueError: {exc}")
            return protocol.encode(CallError(id=message.id, message=str(exc)))
        except BaseException:
            self._retire()  # a host-side failure: the sandbox waits for a reply that will not come
            raise
        if not isinstance(observation, str):
            self._retire()
            raise TypeError(f"the primitive handler returned {type(observation).__name__}, not str, for {message.name}")
        calls.add(message.name, message.args, observation)
        return protocol.encode_result(message.id, observation)  # the hot path: no record built

    def _send(self, transport: Transport, data: bytes) -> None:
        try:
            transport.send(data)
        except OSError:
            raise self._ended(transport) from None

    def _receive(self, transport: Transport, deadline: float) -> protocol.Ready | Call | Done:
        try:
            line = transport.read_line(deadline, self.config.max_message_bytes)
            if line is None:
                raise self._ended(transport)
            return protocol.parse(line, self.config.max_message_bytes)
        except TimeoutError:
            info = transport.finish(kill=True)
            if info.oom_killed:
                raise _Killed(ExecutionStatus.memory, "MemoryError", self._oom_message()) from None
            raise _Killed(
                ExecutionStatus.timeout,
                "TimeoutError",
                f"wall-clock limit of {self.config.timeout_s:g} s exceeded; the sandbox was killed",
            ) from None
        except ProtocolError as exc:
            raise self._crash(transport, f"protocol violation: {exc}") from None

    def _crash(self, transport: Transport, reason: str) -> _Killed:
        transport.finish(kill=True)
        return _Killed(ExecutionStatus.crashed, "SandboxError", reason)

    def _ended(self, transport: Transport) -> _Killed:
        """The sandbox went away by itself: say why as precisely as the backend can tell."""
        info = transport.finish(kill=False)
        if info.oom_killed:
            return _Killed(ExecutionStatus.memory, "MemoryError", self._oom_message())
        if info.exit_code == -SIGXCPU:
            return _Killed(ExecutionStatus.timeout, "TimeoutError", "the session's CPU time limit was exceeded")
        detail = f": {info.diagnostics.strip()[-500:]}" if info.diagnostics.strip() else ""
        return _Killed(
            ExecutionStatus.crashed,
            "SandboxError",
            f"the sandbox exited unexpectedly (exit code {info.exit_code}){detail}",
        )

    def _oom_message(self) -> str:
        return f"memory limit of {self.config.memory_mb} MiB exceeded; the sandbox was killed"

    def _retire(self) -> None:
        if self._transport is not None:
            transport, self._transport = self._transport, None
            transport.close()
        # What earlier snippets defined died with the sandbox; a fresh one holds the action modules only.
        self._known = set().union(*map(_defined_functions, self._actions))
        self._defined = set().union(*map(_bound_names, self._actions))


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

    def add(self, name: str, args: list[Any], observation: str) -> None:
        args, size = _kept_args(args, min(self._per_call, self._left))
        self._left = max(self._left - size, 0)
        observation = truncated(observation, min(self._per_call, self._left))
        self._left = max(self._left - len(observation.encode()), 0)
        self.kept.append({"name": name, "args": args, "observation": observation})


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
