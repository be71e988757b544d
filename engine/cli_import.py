"""`learnact actions import FILE --env ENV --out DIR`: a library from functions a person wrote.

Hand-written actions are checked and validated exactly as learned ones are (the static check as an action
module, at least two primitive calls, each function's ``Example:`` run in the sandbox on a task of the
environment), then kept as versions of origin ``human``, all selected, so that they can be listed, audited,
diffed and evaluated (`eval --method learnact --library DIR`) like a learned library: a control for what
learning achieves. A file with a problem imports nothing: the problems are printed, exit status 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from learnact.actions.library import Library, Origin
from learnact.actions.text import visible
from learnact.engine.cli_common import ExitCode, err, fail, reported, shown
from learnact.engine.cli_options import SandboxOptions, with_groups
from learnact.engine.inputs import read_code
from learnact.envs import EnvSpec, make_env, select_tasks
from learnact.learner.learnact import SandboxValidator, parse_actions
from learnact.sandbox import Sandbox

MAX_IMPORTED = 32  # functions of one file


@with_groups
def import_actions(
    *,
    file: Annotated[Path, typer.Argument(metavar="FILE", help="a Python file of functions over the primitives")],
    env: Annotated[str, typer.Option("--env", help="the environment whose primitives they call")],
    out: Annotated[Path, typer.Option("--out", help="the new library's folder")],
    task: Annotated[
        Optional[str], typer.Option("--task", help="the task the usage examples run on (default: the first)")
    ] = None,
    sandbox_options: SandboxOptions,
) -> None:
    """Make a library of the functions in FILE, checked and validated like learned actions (origin human)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise fail(f"--out: {out} exists and is not an empty folder; give a new folder for the library")
    code = _read(file)
    with reported():
        environment = make_env(EnvSpec(name=env))
        on = select_tasks(environment, task)[0] if task is not None else environment.tasks()[0].id
    parsed = parse_actions(code, [p.name for p in environment.primitives()], MAX_IMPORTED)
    if "" in parsed.problems:
        raise fail(f"{file}: {parsed.problems[''].text}")
    with reported(), Sandbox(sandbox_options.config()) as sandbox:
        validator = SandboxValidator(sandbox, environment, on)
        problems = validator.problems(parsed.actions, parsed.problems)
    if problems:
        for name, problem in problems.items():
            err.print(f"[red]{shown(name)}:[/red] {shown(problem.text)}", soft_wrap=True)
        err.print(f"nothing imported: {len(problems)} of {len(parsed.actions)} functions have a problem")
        raise typer.Exit(ExitCode.FAILED)
    names = [action.name for action in parsed.actions]
    with reported():
        library = Library(out)
        for action in parsed.actions:
            library.new_version(
                action.name, action.code, description=action.description, example=action.example,
                origin=Origin.human, verdict=validator.verdict(action, names),
            )  # fmt: skip
        library.select(dict.fromkeys(names, 1), None, environment.name)
    typer.echo(
        visible(f"imported {len(names)} actions ({', '.join(names)}) into {out}; use them with `learnact eval"
                f" --method learnact --env {environment.name} --library {out}`")
    )  # fmt: skip


def _read(file: Path) -> str:
    with reported():
        return read_code(file)
