"""`learnact serve`: learnact's sandbox for any agent, as a Model Context Protocol server (the official SDK,
the ``[serve]`` extra; this module is imported only by that command).

An MCP client (an IDE assistant, a desktop chat app, an agent framework) gets five tools: check code (the
static checker's findings), open a session (optionally on an environment and task, whose primitive actions
the code can then call by name, each call performed on the host), run code in a session (the
``ExecutionResult``), close a session, and list the environments.

What the server guarantees:
- one sandbox per session, never shared; a session id is a capability: 192 random bits (``secrets``), never
  listed, so a client reaches only the sessions whose ids it was given (MCP itself keeps no connection state
  in its current protocol, so the id is the only key);
- at most ``max_sessions`` open at once; a session idle for ``idle_s`` is closed; a call the client cancels
  (or abandons by disconnecting) has its execution killed and its sandbox removed; every sandbox is removed
  when the server stops (also on SIGTERM), and what a killed server left is swept at the next start;
- the limits (wall clock, memory, calls) are the server's configuration: a client may lower them, never raise
  them; everything a client sends is untrusted input, size-capped and validated like the CLI's;
- over HTTP the server binds to loopback unless told otherwise, and binding elsewhere requires a bearer token
  (``--token-env VAR``): it refuses to start without one.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, ConfigDict, Field

from learnact.actions import CodeKind, Finding, Severity, check, infer_kind
from learnact.actions.errors import LearnactError
from learnact.envs import Environment, EnvSpec, env_names, make_env, primitive_specs, select_tasks
from learnact.sandbox import ExecutionResult, Sandbox, SandboxConfig, Session

log = logging.getLogger(__name__)

MAX_CODE_CHARS = 100_000  # the checker refuses longer code too; refused here before anything reads it
MAX_NAME_CHARS = 200  # an environment name, a task, a session id
SESSION_ID_BYTES = 24
INSTRUCTIONS = (
    "learnact runs Python code you write in an isolated sandbox (no network, no host files, limits on time, "
    "memory and output) and checks it statically first. Open a session, run code in it (state persists "
    "between runs of one session), close it when done. A session opened on an environment and task lets your "
    "code call that environment's primitive actions by name; each call is performed in the real environment."
)


class ServeConfig(BaseModel):
    """The server's own settings: the limits every session gets at most, and how many sessions live how long.

    :raises pydantic.ValidationError: for an unknown field or a value out of range.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    sandbox: SandboxConfig = Field(default_factory=lambda: SandboxConfig(pool_size=0))
    max_sessions: int = Field(8, ge=1, le=256, description="sessions open at once, over all clients")
    idle_s: float = Field(600.0, gt=0, description="a session unused this long is closed")


class SessionInfo(BaseModel):
    """What ``open_session`` returns."""

    session_id: str
    environment: str | None
    task: str | None
    goal: str | None
    observation: str | None
    primitives: list[str]
    timeout_s: float
    memory_mb: int
    max_calls: int


class EnvironmentInfo(BaseModel):
    name: str
    primitives: list[str]


class CheckResult(BaseModel):
    kind: str
    findings: list[Finding]
    errors: int


class ServeError(LearnactError):
    """A tool call the server refuses; the message says why and what to do."""


@dataclass
class _Open:
    """One client's session: its own sandbox, environment and lock (one execution at a time)."""

    sandbox: Sandbox
    session: Session
    stack: ExitStack
    environment: Environment | None
    last_used: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Sessions:
    """The open sessions of every client, with the limits of the server's :class:`ServeConfig`."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self._open: dict[str, _Open] = {}
        self._guard = threading.Lock()

    def open(
        self,
        env: str | None,
        task: str | None,
        timeout_s: float | None,
        memory_mb: int | None,
        max_calls: int | None,
    ) -> SessionInfo:
        """A new session (its sandbox started), limits lowered as asked.

        :raises ServeError: when the server has ``max_sessions`` open, or a limit is raised.
        :raises LearnactError: when the environment or task cannot be opened, or the sandbox cannot start.
        """
        limits = self.config.sandbox
        asked = {"timeout_s": timeout_s, "memory_mb": memory_mb, "max_calls": max_calls}
        for name, value in asked.items():
            if value is not None and value > getattr(limits, name):
                raise ServeError(
                    f"{name} {value} is above this server's {getattr(limits, name)}",
                    "ask for the server's limit or less (its operator sets it)",
                )
        config = limits.model_copy(update={k: v for k, v in asked.items() if v is not None})
        with self._guard:
            if len(self._open) >= self.config.max_sessions:
                raise ServeError(
                    f"this server has {self.config.max_sessions} sessions open, its limit",
                    "close a session you no longer need, or wait for an idle one to be closed",
                )
            session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
            self._open[session_id] = None  # type: ignore[assignment]  # the slot is taken while it starts
        try:
            opened, reset = self._start(config, env, task)
        except BaseException:
            with self._guard:
                del self._open[session_id]
            raise
        with self._guard:
            self._open[session_id] = opened
        log.info("session %s… opened (%s)", session_id[:6], env or "no environment")
        return SessionInfo(
            session_id=session_id,
            environment=env,
            task=reset[0] if reset else None,
            goal=reset[1] if reset else None,
            observation=reset[2] if reset else None,
            primitives=[p.signature() for p in opened.session.primitives],
            timeout_s=config.timeout_s,
            memory_mb=config.memory_mb,
            max_calls=config.max_calls,
        )

    def _start(
        self, config: SandboxConfig, env: str | None, task: str | None
    ) -> tuple[_Open, tuple[str, str, str] | None]:
        environment, reset = None, None
        if env is not None:
            environment = make_env(EnvSpec(name=env))
            chosen = select_tasks(environment, task)[0] if task is not None else environment.tasks()[0].id
            started = environment.reset(chosen)
            reset = (chosen, started.goal, started.observation)
        stack = ExitStack()
        try:
            sandbox = stack.enter_context(Sandbox(config))
            if environment is None:
                session = stack.enter_context(sandbox.session())
            else:
                session = stack.enter_context(sandbox.session(environment.primitives(), environment.call))
        except BaseException:
            stack.close()
            raise
        return _Open(sandbox, session, stack, environment), reset

    def get(self, session_id: str) -> _Open:
        """The open session ``session_id``.

        :raises ServeError: for an id that is not one (never opened, or closed).
        """
        with self._guard:
            opened = self._open.get(session_id)
        if opened is None:
            raise ServeError(f"no open session '{session_id[:MAX_NAME_CHARS]}'", "open one with open_session")
        opened.last_used = time.monotonic()
        return opened

    def close(self, session_id: str) -> None:
        """Close the session (its sandbox removed).

        :raises ServeError: for an id that is not an open session.
        """
        self.get(session_id)
        self.discard(session_id)

    def discard(self, session_id: str) -> None:
        """End the session, if open: its sandbox is killed (an execution in progress with it) and removed."""
        with self._guard:
            opened = self._open.pop(session_id, None)
        if opened is not None:
            opened.stack.close()
            log.info("session %s… closed", session_id[:6])

    def close_idle(self) -> int:
        """Close the sessions unused for ``idle_s``; how many."""
        now = time.monotonic()
        with self._guard:
            idle = [
                key
                for key, opened in self._open.items()
                if opened is not None and now - opened.last_used > self.config.idle_s and not opened.lock.locked()
            ]
        for key in idle:
            self.discard(key)
        return len(idle)

    def close_all(self) -> None:
        with self._guard:
            keys = [key for key, opened in self._open.items() if opened is not None]
        for key in keys:
            self.discard(key)


async def _in_thread(work: Callable[[], Any]) -> Any:
    """``work()`` in a worker thread; a LearnactError becomes the tool's error, which the client reads."""
    try:
        return await anyio.to_thread.run_sync(work)
    except LearnactError as exc:
        raise ToolError(str(exc)) from None


def build_server(config: ServeConfig) -> MCPServer:
    """The MCP server with learnact's tools, its sessions closed when it stops."""
    sessions = Sessions(config)

    @asynccontextmanager
    async def lifespan(server: Any) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_close_idle, sessions)
            try:
                yield
            finally:
                tasks.cancel_scope.cancel()
                await anyio.to_thread.run_sync(sessions.close_all)

    server = MCPServer("learnact", instructions=INSTRUCTIONS, lifespan=lifespan)
    _add_code_tools(server)
    _add_session_tools(server, sessions)
    server.learnact_sessions = sessions  # type: ignore[attr-defined]
    return server


def _add_code_tools(server: MCPServer) -> None:
    """The tools that need no session: check code, list the environments."""

    @server.tool(
        description="Statically check Python code before running it: returns findings (rule, line, column, "
        "message, severity). kind: 'agent-snippet' (statements that call functions), 'action-module' (only "
        "imports and function definitions with docstrings), 'program' (definitions and the statements that "
        "use them), or 'auto'. env: an environment name whose primitive actions the code may call."
    )
    def check_code(
        code: Annotated[str, Field(max_length=MAX_CODE_CHARS)],
        kind: Literal["auto", "agent-snippet", "action-module", "program"] = "auto",
        env: Annotated[str | None, Field(max_length=MAX_NAME_CHARS)] = None,
    ) -> CheckResult:
        chosen = infer_kind(code) if kind == "auto" else CodeKind(kind.replace("-", "_"))
        try:
            primitives = primitive_specs(env) if env else []
        except LearnactError as exc:
            raise ToolError(str(exc)) from None
        findings = check(code, chosen, primitives)
        errors = sum(f.severity is Severity.error for f in findings)
        return CheckResult(kind=chosen.value, findings=findings, errors=errors)

    @server.tool(
        description="List the environments a session can be opened on, each with its primitive actions "
        "(the functions your code may call in a session opened on it)."
    )
    def list_environments() -> list[EnvironmentInfo]:
        found = []
        for name in env_names():
            try:
                found.append(EnvironmentInfo(name=name, primitives=[p.signature() for p in primitive_specs(name)]))
            except LearnactError:  # one that needs files or data not given here (pddl, alfworld without data)
                continue
        return found


def _add_session_tools(server: MCPServer, sessions: Sessions) -> None:
    """The tools of a session's life: open it, run code in it, close it."""

    @server.tool(
        description="Open a sandbox session and return its session_id. Optionally on an environment (see "
        "list_environments) and a task (an index or id; default the first): the session's code can then call "
        "the environment's primitive actions by name, and the task's goal and first observation are returned. "
        "timeout_s, memory_mb and max_calls may lower the server's limits, never raise them."
    )
    async def open_session(
        env: Annotated[str | None, Field(max_length=MAX_NAME_CHARS)] = None,
        task: Annotated[str | None, Field(max_length=MAX_NAME_CHARS)] = None,
        timeout_s: Annotated[float | None, Field(gt=0)] = None,
        memory_mb: Annotated[int | None, Field(gt=0)] = None,
        max_calls: Annotated[int | None, Field(gt=0)] = None,
    ) -> SessionInfo:
        return await _in_thread(lambda: sessions.open(env, task, timeout_s, memory_mb, max_calls))

    @server.tool(
        description="Run Python code in a session: it is checked, then executed in the session's sandbox; "
        "variables persist between runs. Returns the status (ok, error, rejected, timeout, ...), stdout, the "
        "error with its traceback, the findings of the check, and every primitive call with what it returned."
    )
    async def run_code(
        session_id: Annotated[str, Field(max_length=MAX_NAME_CHARS)],
        code: Annotated[str, Field(max_length=MAX_CODE_CHARS)],
    ) -> ExecutionResult:
        try:
            opened = sessions.get(session_id)
        except ServeError as exc:
            raise ToolError(str(exc)) from None

        def execute() -> ExecutionResult:
            with opened.lock:
                return opened.session.execute(code)

        try:
            return await anyio.to_thread.run_sync(execute, abandon_on_cancel=True)
        except anyio.get_cancelled_exc_class():
            # The client cancelled or went away: the execution is killed with its sandbox (shielded: the
            # cancelled scope would otherwise cancel the clean-up too).
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(lambda: sessions.discard(session_id))
            raise

    @server.tool(
        description="Close a session when you are done with it: its sandbox and everything in it are removed, "
        "and its session_id stops working."
    )
    async def close_session(session_id: Annotated[str, Field(max_length=MAX_NAME_CHARS)]) -> str:
        await _in_thread(lambda: sessions.close(session_id))
        return "closed"


async def _close_idle(sessions: Sessions, every_s: float = 5.0) -> None:
    while True:
        await anyio.sleep(min(every_s, sessions.config.idle_s))
        closed = await anyio.to_thread.run_sync(sessions.close_idle)
        if closed:
            log.info("closed %d idle session(s)", closed)


def bearer_guard(app: Callable[..., Any], token: str) -> Callable[..., Any]:
    """``app`` (ASGI) answering 401 to an HTTP request without ``Authorization: Bearer <token>``."""
    expected = f"Bearer {token}".encode()

    async def guarded(scope: dict, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, expected):
                await send(
                    {"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"text/plain")]}
                )
                await send({"type": "http.response.body", "body": b"a bearer token is required\n"})
                return
        await app(scope, receive, send)

    return guarded
