"""The LearnAct branches of the commands: `learnact learn --method learnact` (learn an action library, with
progress per phase) and `learnact eval --method learnact --library DIR` (use its selected set)."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

from rich.console import Console
from rich.table import Table

from learnact.actions.models import ActionSet
from learnact.engine.agents import Learns
from learnact.engine.commands.common import err, fail, learning_run, reported
from learnact.engine.markup import shown
from learnact.engine.records import EpisodeRecord
from learnact.engine.runs.learnact_run import (
    BY_TYPE,
    LearnactResult,
    LearnactRunConfig,
    LearningServices,
    learn_by_type,
    learned_by_type,
    learned_library,
    learns_by_type,
    run_learnact,
)
from learnact.envs import EnvSpec


def learn_actions(config: LearnactRunConfig, out: Path, services: LearningServices, json_output: bool) -> None:
    """`learnact learn --method learnact`: create, validate, score and optimise actions on the training tasks of
    ``config`` with ``services`` (their progress printed here); the library at ``<out>/library``.

    :raises typer.Exit: (the error printed) when learning cannot go on.
    """
    quiet = json_output

    def progress(line: str) -> None:
        if not quiet:
            err.print(shown(line))

    def on_episode(record: EpisodeRecord) -> None:
        if not quiet:
            outcome = "succeeded" if record.success else f"failed ({record.ended})"
            err.print(f"  {shown(record.task)}: {outcome}, {len(record.steps)} steps")

    if not quiet:
        c = config.learnact
        err.print(
            f"{shown(config.run.env.name)} · learnact: {len(config.train)} training tasks (seed {config.seed}), "
            f"{c.samples} sample{'s' * (c.samples != 1)}, up to {c.rounds} round{'s' * (c.rounds != 1)}, "
            f"style {c.style}, score {' + '.join(c.score_terms)}"
        )
    with reported():
        by_type = learns_by_type(config)
        learn = learn_by_type if by_type else run_learnact
        learned = learn(config, out, replace(services, progress=progress, on_episode=on_episode))
    if json_output:
        if isinstance(learned, dict):
            sys.stdout.write(json.dumps({"types": {t: r.model_dump(mode="json") for t, r in learned.items()}}) + "\n")
        else:
            sys.stdout.write(learned.model_dump_json() + "\n")
    elif isinstance(learned, dict):
        for task_type, result in learned.items():
            show_library(result, out / BY_TYPE / task_type, task_type)
        Console().print(
            shown(
                f"one library per task type in {out / BY_TYPE}; use them with `learnact eval --method learnact "
                f"--library {out}`"
            ),
            soft_wrap=True,
        )
    else:
        show_library(learned, out)


def show_library(result: LearnactResult, out: Path, task_type: str = "") -> None:
    """The selected actions of the learning run in ``out`` (of ``task_type``, when the run learned by type)."""
    console = Console()
    of = f" for {task_type}" if task_type else ""
    if not result.selected:
        console.print(
            shown(
                f"no action was kept{of} (score {result.score or 0.0:.3f}): none passed validation or the agent"
                f" never called one while scoring; the versions and why each was dropped: {result.library}"
            ),
            soft_wrap=True,
        )
        return
    library, _ = learned_library(out)
    title = f"learned actions{of} (score {result.score or 0.0:.3f} after {result.rounds} rounds)"
    table = Table(title=shown(title))
    for column in ("action", "version", "description", "notes"):
        table.add_column(column)
    for name, number in result.selected.items():
        version = library.get(name, number)
        table.add_row(
            shown(version.signature or name), str(number), shown(version.description), str(len(version.notes))
        )
    console.print(table)
    if not task_type:
        console.print(
            shown(f"library: {result.library} (use it with `learnact eval --method learnact --library {out}`)"),
            soft_wrap=True,
        )


class LearnedActions(NamedTuple):
    """What `eval --library` gives the run's settings: the selected set (``actions``) or each task type's
    (``by_type``, a run that learned by type), and the training tasks of the learning (``train``)."""

    actions: ActionSet | None
    by_type: dict[str, ActionSet]
    train: tuple[str, ...]


def learned_actions(method: str, library: Path | None, env: EnvSpec, interim: bool = False) -> LearnedActions | None:
    """`learnact eval --library DIR`: the selected actions of the library in DIR (a library folder, the learning
    run holding one, or a run that learned one library per task type) and the training tasks of the run that
    learned them; None for another method. ``interim``: the set selected so far by a learning run that has not
    finished.

    :raises typer.Exit: (the error printed, status USAGE) for learnact without a library, a library given to
        another method, a library learned on another environment, or a library that cannot be used.
    """
    library = learning_run(method, Learns.library, library, "--library", env)
    if library is None:
        return None
    by_type = learned_by_type(library)
    if by_type is None:
        actions, train = _selected(library, env, interim)
        return LearnedActions(actions, {}, train)
    if not by_type:
        raise fail(f"--library: {library} learned by task type but holds no type's run yet: finish the learning")
    sets: dict[str, ActionSet] = {}
    trains: list[str] = []
    for task_type, folder in by_type.items():
        sets[task_type], train = _selected(folder, env, interim, task_type)
        trains += train
    return LearnedActions(None, sets, tuple(trains))


def _selected(library: Path, env: EnvSpec, interim: bool, task_type: str = "") -> tuple[ActionSet, tuple[str, ...]]:
    """The selected set of one library, and the training tasks of the run that learned it.

    :raises typer.Exit: (the error printed, status USAGE) for a library learned on another environment, or one
        that cannot be used.
    """
    of = f" ({task_type})" if task_type else ""
    with reported():
        found, train = learned_library(library, interim)
    if found.env() not in (None, env.name):
        raise fail(
            f"--library{of}: the library was learned on {found.env()}, not on {env.name}; its actions call that"
            " environment's primitives: give a library learned on this environment"
        )
    progress = found.learning()
    if progress is not None and not progress.finished:
        err.print(f"[yellow]warning:[/yellow] evaluating the set selected so far{of}: {progress.describe()}")
    actions = found.current()
    if not actions.actions:
        err.print(
            f"[yellow]warning:[/yellow] the library{of} keeps no action (its learning dropped them all): the"
            " learnact agent has the primitives only, as act has"
        )
    return actions, train
