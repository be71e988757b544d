"""`learnact sandbox exec PATH`: run one program in a fresh sandbox session and print the result.

The file is run as an *agent snippet* (statements that call primitives; with the check on, the
checker's rules for snippets apply, so it cannot define functions: put those in an action module).
PATH may be '-' (standard input). With --env, the environment is reset to --task (an index or id,
as in `eval --tasks`) and its primitives are callable by name; their arguments are validated on the
host by the environment. Exit status: 0 iff the status is ok, 1 otherwise, 2 on usage errors
(missing or too large file, unknown environment or task, --memory above the machine's), 4 when the
sandbox cannot run here (see ``ExitCode``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from learnact.engine.commands.common import ExitCode, fail, reported
from learnact.engine.commands.inputs import read_code
from learnact.engine.commands.options import EnvDataOptions, SandboxOptions, with_groups
from learnact.engine.markup import shown
from learnact.envs import Environment, EnvSpec, make_env, select_tasks
from learnact.sandbox import ExecutionResult, Sandbox


@with_groups
def exec_program(
    *,
    path: Annotated[Path, typer.Argument(help="Python file to run as an agent snippet; '-' reads standard input")],
    sandbox_options: SandboxOptions,
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
    env_data: EnvDataOptions,
    json_output: Annotated[bool, typer.Option("--json", help="print the result as JSON only")] = False,
) -> None:
    """Run PATH in a fresh sandbox session and print the ExecutionResult."""
    with reported():
        code = read_code(path)
    if task is not None and env is None:
        raise fail("--task needs --env")
    host_mib = _host_memory_mib()
    if host_mib is not None and memory > host_mib:
        raise fail(f"--memory {memory} MiB is more than this machine's memory ({host_mib} MiB)")
    environment = None
    if env:
        with reported():
            environment = _environment(env_data.spec(env), task)
    config = sandbox_options.config(
        check=not no_check,
        timeout_s=timeout,
        memory_mb=memory,
        pool_size=0,  # one session: a warm pool would only start a container nobody uses
    )
    with reported():
        sandbox = Sandbox(config)
    if environment is None:
        session_context = sandbox.session()
    else:
        session_context = sandbox.session(environment.primitives(), environment.call)
    with sandbox, session_context as session:
        result = session.execute(code)
    if json_output:
        # ASCII only: every control character, C1 and bidi override included, stays an escape.
        typer.echo(json.dumps(result.model_dump(mode="json"), indent=2, ensure_ascii=True))
    else:
        _print(result, "<stdin>" if str(path) == "-" else str(path))
    raise typer.Exit(ExitCode.OK if result.ok else ExitCode.FAILED)


def _host_memory_mib() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // (1 << 20)
    except (ValueError, OSError):
        return None


def _environment(spec: EnvSpec, task: str | None) -> Environment:
    """The environment of ``spec`` reset to ``task`` (an index or id; None: the first).

    :raises LearnactError: when it cannot be built, or ``task`` is not one of its tasks.
    """
    environment = make_env(spec)
    if not environment.tasks():
        raise fail(f"environment '{spec.name}' has no tasks")
    chosen = select_tasks(environment, task)[:1] if task is None else select_tasks(environment, task)
    if len(chosen) != 1:
        raise fail(f"--task {task} selects {len(chosen)} tasks; give one index or id")
    environment.reset(chosen[0])
    return environment


def _print(result: ExecutionResult, path: str) -> None:
    console = Console(highlight=False, emoji=False)  # :name: in untrusted text stays text
    colour = "green" if result.ok else "red"
    console.print(f"[bold {colour}]{result.status.value}[/bold {colour}] in {result.duration_s:.3f} s")
    for finding in result.findings:
        console.print(shown(finding.render(path)), soft_wrap=True)
    if result.calls:
        table = Table("#", "primitive call", "observation", "valid")
        for number, call in enumerate(result.calls, 1):
            args = ", ".join(repr(a) for a in call.args)
            valid = "yes" if call.valid else "no"
            table.add_row(str(number), shown(f"{call.name}({args})"), shown(call.observation), valid)
        console.print(table)
    if result.stdout:
        console.print(Panel(shown(result.stdout.rstrip("\n")), title="stdout", title_align="left"))
    if result.error:
        body = result.error.traceback or f"{result.error.type}: {result.error.message}"
        console.print(Panel(shown(body), title=f"[red]{shown(result.error.type)}[/red]", title_align="left"))
