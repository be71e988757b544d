"""`learnact actions import FILE --env ENV --out DIR`: a library from functions a person wrote.

Hand-written actions are checked and validated exactly as learned ones are (the static check as an action
module, at least two primitive calls, each function's ``Example:`` run in the sandbox on a task of the
environment), then kept as versions of origin ``human``, all selected, so that they can be listed, audited,
diffed and evaluated (`eval --method learnact --library DIR`) like a learned library: a control for what
learning achieves. A file with a problem imports nothing: the problems are printed, exit status 1.

``--usage LINES`` adds what LearnAct's usage demonstration gives a learned set: the environment's demonstration
task solved with the actions, one call per line, run in the sandbox from the task's start and kept (with the
observations the environment gave) only when it reaches the goal, so that the agent sees the actions at work
exactly as it sees a learned set's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from learnact.actions.library import Library, Origin
from learnact.actions.models import ActionSet, LearnedAction, UsageDemonstration
from learnact.actions.text import visible
from learnact.engine.commands.common import ExitCode, err, fail, reported
from learnact.engine.commands.inputs import read_code
from learnact.engine.commands.options import SandboxOptions, with_groups
from learnact.engine.markup import shown
from learnact.engine.runs.learnact_run import demo_task
from learnact.engine.runs.usage import parse_lines, replay
from learnact.envs import EnvSpec, make_env, select_tasks
from learnact.learner.answers import ParsedAction, called_names, parse_actions
from learnact.learner.validation import SandboxValidator
from learnact.sandbox import Sandbox

MAX_IMPORTED = 32  # functions of one file
MAX_USAGE_LINES = 60  # lines of a usage demonstration


@with_groups
def import_actions(
    *,
    file: Annotated[Path, typer.Argument(metavar="FILE", help="a Python file of functions over the primitives")],
    env: Annotated[str, typer.Option("--env", help="the environment whose primitives they call")],
    out: Annotated[Path, typer.Option("--out", help="the new library's folder")],
    task: Annotated[
        Optional[str], typer.Option("--task", help="the task the usage examples run on (default: the first)")
    ] = None,
    usage: Annotated[
        Optional[Path],
        typer.Option(
            "--usage",
            metavar="LINES",
            help="a file of call lines that solve the environment's demonstration task with the actions: kept as "
            "the library's usage demonstration once they reach its goal in the sandbox",
        ),
    ] = None,
    sandbox_options: SandboxOptions,
) -> None:
    """Make a library of the functions in FILE, checked and validated like learned actions (origin human)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise fail(f"--out: {out} exists and is not an empty folder; give a new folder for the library")
    code = _read(file)
    usage_lines = _read(usage) if usage is not None else None
    spec = EnvSpec(name=env)
    with reported():
        environment = make_env(spec)
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
        shown_at_work = None
        if usage_lines is not None:
            assert usage is not None
            shown_at_work = _demonstrated(usage, usage_lines, parsed.actions, validator, spec)
    names = [action.name for action in parsed.actions]
    with reported():
        library = Library(out)
        for action in parsed.actions:
            library.new_version(action.draft(Origin.human, validator.verdict(action, names)))
        library.select(dict.fromkeys(names, 1), None, environment.name, usage=shown_at_work)
    typer.echo(
        visible(
            f"imported {len(names)} actions ({', '.join(names)}) into {out}; use them with `learnact eval"
            f" --method learnact --env {environment.name} --library {out}`"
        )
    )


def _demonstrated(
    file: Path, text: str, actions: list[ParsedAction], validator: SandboxValidator, spec: EnvSpec
) -> UsageDemonstration:
    """The lines of ``file`` run in ``validator``'s sandbox on the demonstration task of the type of the task the
    actions were validated on, grounded as a learned set's (``spec``: the environment's).

    :raises typer.Exit: (the problem printed, status FAILED) for lines that are not calls with literal arguments,
        that call none of the actions, fail, or end before the goal.
    """
    environment = validator.env
    task_type = next(t.type for t in environment.tasks() if t.id == validator.task)
    demo = demo_task(environment, spec, task_type, ())
    lines, problem = parse_lines(text, MAX_USAGE_LINES)
    names = [action.name for action in actions]
    if problem is None and not any(called_names(line, names) for line in lines):
        problem = f"the lines call none of the actions ({', '.join(names)})"
    if problem is None:
        demo_env = demo.open_env()
        if demo_env is None:
            raise fail(f"--usage: the demonstration task of {environment.name} cannot be opened to run the lines on")
        action_set = ActionSet(actions=tuple(LearnedAction(name=a.name, code=a.code) for a in actions))
        try:
            ran = replay(demo_env, demo.task, action_set, lines, validator.sandbox)
        finally:
            demo_env.close()
        if ran.success:
            return UsageDemonstration(task=demo.task, goal=demo.goal, initial=demo.initial, steps=ran.steps)
        problem = ran.problem or "the goal was not reached"
    err.print(f"[red]{shown(str(file))}:[/red] {shown(problem)}", soft_wrap=True)
    err.print(f"nothing imported: the usage lines do not solve the demonstration task {shown(demo.task)}: {demo.goal}")
    raise typer.Exit(ExitCode.FAILED)


def _read(file: Path) -> str:
    with reported():
        return read_code(file)
