"""`learnact sandbox exec PATH`: run one program in a fresh sandbox session and print the result.

The file is run as an *agent snippet* (statements that call primitives; with the check on, the
checker's rules for snippets apply, so it cannot define functions: put those in an action module).
PATH may be '-' (standard input). With --env, the environment is reset to --task (an index or id,
as in `eval --tasks`) and its primitives are callable by name; their arguments are validated on the
host by the environment. Exit status: 0 iff the status is ok, 1 otherwise, 2 on usage errors
(missing or too large file, unknown environment or task, --memory above the machine's, no sandbox).
"""

from __future__ import annotations

import json
import os
from enum import Enum
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from learnact.actions.text import visible
from learnact.engine.inputs import InputError, read_code
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
    path: Annotated[Path, typer.Argument(help="Python file to run as an agent snippet; '-' reads standard input")],
    backend: Annotated[
        Optional[Backend],
        typer.Option(help="docker (default when an engine answers) or process (rlimited child; weaker)"),
    ] = None,
    runtime: Annotated[Runtime, typer.Option(help="OCI runtime of the container; runsc is gVisor")] = Runtime.runc,
    timeout: Annotated[float, typer.Option(help="wall-clock seconds before the sandbox is killed", min=0.1)] = 10.0,
    memory: Annotated[
        int, typer.Option(help="memory limit in MiB (no swap); at most the machine's memory", min=32)
    ] = 256,
    no_check: Annotated[
        bool, typer.Option("--no-check", help="skip the static check and RestrictedPython (isolation tests)")
    ] = False,
    env: Annotated[Optional[str], typer.Option(help="environment whose primitives the program may call")] = None,
    task: Annotated[
        Optional[str],
        typer.Option(help="task to reset --env to, by index or id as in `eval --tasks` (default: the first)"),
    ] = None,
    pddl_domain: Annotated[Optional[Path], typer.Option(help="external PDDL domain file (--env pddl)")] = None,
    pddl_problems: Annotated[
        Optional[list[Path]], typer.Option(help="external PDDL problem files or folders of them (--env pddl)")
    ] = None,
    alfworld_data: Annotated[
        Optional[Path], typer.Option(help="folder holding json_2.1.1/ (default: $ALFWORLD_DATA)")
    ] = None,
    split: Annotated[str, typer.Option(help="ALFWorld split")] = "valid_unseen",
    json_output: Annotated[bool, typer.Option("--json", help="print the result as JSON only")] = False,
) -> None:
    """Run PATH in a fresh sandbox session and print the ExecutionResult."""
    try:
        code = read_code(path)
    except InputError as exc:
        _usage_error(str(exc))
    if task is not None and env is None:
        _usage_error("--task needs --env")
    host_mib = _host_memory_mib()
    if host_mib is not None and memory > host_mib:
        _usage_error(f"--memory {memory} MiB is more than this machine's memory ({host_mib} MiB)")
    environment = None
    if env:
        spec = dict(pddl_domain=pddl_domain, pddl_problems=pddl_problems, alfworld_data=alfworld_data, split=split)
        environment = _environment(env, task, **spec)
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
        # ASCII only: every control character, C1 and bidi override included, stays an escape.
        typer.echo(json.dumps(result.model_dump(mode="json"), indent=2, ensure_ascii=True))
    else:
        _print(result, "<stdin>" if str(path) == "-" else str(path))
    raise typer.Exit(0 if result.ok else 1)


def _default_backend() -> Backend:
    from learnact.sandbox.docker_backend import START_HINT, engine_answers

    if not engine_answers():
        _usage_error(f"no Docker engine answers: {START_HINT}")
    return Backend.docker


def _host_memory_mib() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // (1 << 20)
    except (ValueError, OSError):
        return None


def _environment(
    name: str,
    task: str | None,
    pddl_domain: Path | None = None,
    pddl_problems: list[Path] | None = None,
    alfworld_data: Path | None = None,
    split: str = "valid_unseen",
) -> Environment:
    from learnact.envs.registry import EnvSpec, expand_problem_paths, make_env, select_tasks

    try:
        spec = EnvSpec(
            name=name,
            pddl_domain=str(pddl_domain) if pddl_domain else None,
            pddl_problems=expand_problem_paths(pddl_problems or (), pddl_domain),
            alfworld_data=str(alfworld_data) if alfworld_data else None,
            split=split,
        )
        environment = make_env(spec)
        if not environment.tasks():
            _usage_error(f"environment '{name}' has no tasks")
        chosen = select_tasks(environment, task)[:1] if task is None else select_tasks(environment, task)
        if len(chosen) != 1:
            _usage_error(f"--task {task} selects {len(chosen)} tasks; give one index or id")
        environment.reset(chosen[0])
    except (KeyError, ValueError, OSError) as exc:
        if isinstance(exc, KeyError) and exc.args:
            message = str(exc.args[0])
        else:
            message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        _usage_error(message)
    return environment


def _usage_error(message: str) -> NoReturn:
    Console(stderr=True, highlight=False, emoji=False).print(f"[red]error:[/red] {shown(message)}", soft_wrap=True)
    raise typer.Exit(USAGE_ERROR)


def shown(text: str) -> str:
    """Untrusted text as rich markup that prints it literally: control characters made visible,
    markup escaped (program output, errors, observations, messages quoting code, diagnostics)."""
    return escape(visible(text))


def _print(result: ExecutionResult, path: str) -> None:
    console = Console(highlight=False, emoji=False)  # :name: in untrusted text stays text
    colour = "green" if result.ok else "red"
    console.print(f"[bold {colour}]{result.status.value}[/bold {colour}] in {result.duration_s:.3f} s")
    for finding in result.findings:
        console.print(shown(finding.render(path)), soft_wrap=True)
    if result.calls:
        table = Table("#", "primitive call", "observation")
        for number, call in enumerate(result.calls, 1):
            args = ", ".join(repr(a) for a in call.args)
            table.add_row(str(number), shown(f"{call.name}({args})"), shown(call.observation))
        console.print(table)
    if result.stdout:
        console.print(Panel(shown(result.stdout.rstrip("\n")), title="stdout", title_align="left"))
    if result.error:
        body = result.error.traceback or f"{result.error.type}: {result.error.message}"
        console.print(Panel(shown(body), title=f"[red]{shown(result.error.type)}[/red]", title_align="left"))
