"""`learnact sandbox exec PATH`: run one program in a fresh sandbox session and print the result.

The file is run as an *agent snippet* (statements that call primitives; with the check on, the
checker's rules for snippets apply, so it cannot define functions: put those in an action module).
With --env, the environment is reset to --task and its primitives are callable by name; their
arguments are validated on the host by the environment. Exit status: 0 iff the status is ok,
1 otherwise, 2 on usage errors (missing file, unknown environment or task, no sandbox available).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from learnact.envs.base import Environment
from learnact.sandbox import ExecutionResult, Sandbox, SandboxConfig, SandboxUnavailable

USAGE_ERROR = 2


class Backend(str, Enum):
    docker = "docker"
    process = "process"


class Runtime(str, Enum):
    runc = "runc"
    runsc = "runsc"


def exec_program(
    path: Annotated[Path, typer.Argument(help="Python file to run as an agent snippet")],
    backend: Annotated[
        Optional[Backend],
        typer.Option(help="docker (default when an engine answers) or process (rlimited child; weaker)"),
    ] = None,
    runtime: Annotated[Runtime, typer.Option(help="OCI runtime of the container; runsc is gVisor")] = Runtime.runc,
    timeout: Annotated[float, typer.Option(help="wall-clock seconds before the sandbox is killed", min=0.1)] = 10.0,
    memory: Annotated[int, typer.Option(help="memory limit in MiB (no swap)", min=32)] = 256,
    no_check: Annotated[
        bool, typer.Option("--no-check", help="skip the static check and RestrictedPython (isolation tests)")
    ] = False,
    env: Annotated[Optional[str], typer.Option(help="environment whose primitives the program may call")] = None,
    task: Annotated[Optional[str], typer.Option(help="task id to reset --env to (default: its first task)")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="print the result as JSON only")] = False,
) -> None:
    """Run PATH in a fresh sandbox session and print the ExecutionResult."""
    try:
        code = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _usage_error(f"cannot read {path}: {exc.strerror if isinstance(exc, OSError) else exc}")
    if task is not None and env is None:
        _usage_error("--task needs --env")
    environment = _environment(env, task) if env else None
    config = SandboxConfig(
        backend=(backend or _default_backend()).value,
        runtime=runtime.value,
        check=not no_check,
        timeout_s=timeout,
        memory_mb=memory,
        pool_size=0,  # one session: a warm pool would only start a container nobody uses
    )
    try:
        sandbox = Sandbox(config)
    except SandboxUnavailable as exc:
        _usage_error(str(exc))
    if environment is None:
        session_context = sandbox.session()
    else:
        session_context = sandbox.session(
            environment.primitives(), lambda name, args: environment.call(name, args).observation
        )
    with sandbox, session_context as session:
        result = session.execute(code)
    if json_output:
        typer.echo(result.model_dump_json(indent=2))
    else:
        _print(result, str(path))
    raise typer.Exit(0 if result.ok else 1)


def _default_backend() -> Backend:
    from learnact.sandbox.docker_backend import START_HINT, engine_answers

    if not engine_answers():
        _usage_error(f"no Docker engine answers: {START_HINT}")
    return Backend.docker


def _environment(name: str, task: str | None) -> Environment:
    from learnact.envs.registry import make_env

    try:
        environment = make_env(name)
        tasks = environment.tasks()
        if not tasks:
            _usage_error(f"environment '{name}' has no tasks")
        environment.reset(task or tasks[0].id)
    except (KeyError, ValueError) as exc:
        _usage_error(str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc))
    return environment


def _usage_error(message: str) -> NoReturn:
    Console(stderr=True, highlight=False).print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(USAGE_ERROR)


def _print(result: ExecutionResult, path: str) -> None:
    console = Console(highlight=False)
    colour = "green" if result.ok else "red"
    console.print(f"[bold {colour}]{result.status.value}[/bold {colour}] in {result.duration_s:.3f} s")
    for finding in result.findings:
        console.print(escape(finding.render(path)), soft_wrap=True)
    if result.calls:
        table = Table("#", "primitive call", "observation")
        for number, call in enumerate(result.calls, 1):
            args = ", ".join(repr(a) for a in call.args)
            table.add_row(str(number), escape(f"{call.name}({args})"), escape(call.observation))
        console.print(table)
    if result.stdout:
        console.print(Panel(escape(result.stdout.rstrip("\n")), title="stdout", title_align="left"))
    if result.error:
        body = result.error.traceback or f"{result.error.type}: {result.error.message}"
        console.print(Panel(escape(body), title=f"[red]{escape(result.error.type)}[/red]", title_align="left"))
