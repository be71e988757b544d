"""`learnact envs list`: the environments, built in and added by plugins, their task counts and primitives."""

from __future__ import annotations

import json
import logging
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from learnact.actions import LearnactError
from learnact.actions.plugins import PluginError
from learnact.engine.commands.common import ExitCode, failure
from learnact.engine.markup import shown
from learnact.envs import (
    EnvSpec,
    PrimitiveSpec,
    UnknownEnvironment,
    env_names,
    env_plugins,
    env_profile,
    make_env,
    primitive_specs,
)

log = logging.getLogger(__name__)


def _primitive_rows(primitives: list[PrimitiveSpec]) -> list[dict]:
    return [{"name": p.name, "params": [q.name for q in p.params], "doc": p.doc} for p in primitives]


def listing() -> tuple[list[dict], list[LearnactError]]:
    """Every environment with its task count (None when its data cannot be found), primitives and the
    distribution that adds it (None: built in); and the plugins that cannot be listed (refused or broken),
    each as the error saying why."""
    rows = []
    for name in env_names():
        try:
            primitives = primitive_specs(name)
        except UnknownEnvironment:  # a name for external files only (pddl): nothing to list until given some
            continue
        try:
            tasks: int | None = len(make_env(EnvSpec(name=name)).tasks())
        except LearnactError as exc:  # ALFWorld without a data folder: primitives are known, games are not
            log.info("cannot count the tasks of %s: %s", name, exc)
            tasks = None
        rows.append({"name": name, "tasks": tasks, "primitives": _primitive_rows(primitives), "distribution": None})
    plugins = env_plugins()
    problems: list[LearnactError] = list(plugins.refused)
    for plugin in plugins.plugins.values():
        primitives: list[PrimitiveSpec] = []
        try:
            env = make_env(EnvSpec(name=plugin.name))
            tasks = len(plugin.call("listing its tasks", env.tasks))
            primitives = plugin.call("listing its primitives", env.primitives)
        except PluginError as exc:
            problems.append(exc)
            continue
        except LearnactError as exc:  # the plugin's own error (its data not found): listed, tasks unknown
            log.info("cannot count the tasks of %s: %s", plugin.name, exc)
            tasks = None
        rows.append(
            {
                "name": plugin.name,
                "tasks": tasks,
                "primitives": _primitive_rows(primitives),
                "distribution": plugin.distribution,
            }
        )
    return rows, problems


def list_envs(
    json_output: Annotated[bool, typer.Option("--json", help="print JSON only")] = False,
) -> None:
    """List every environment with its task count and primitive actions (and the distribution of a plugin's)."""
    rows, problems = listing()
    if json_output:
        sys.stdout.write(json.dumps(rows) + "\n")
    else:
        show_table(rows)
    for problem in problems:
        failure(problem)  # its error line; the listing as a whole ends with FAILED
    if problems:
        raise typer.Exit(ExitCode.FAILED)


def show_table(rows: list[dict]) -> None:
    """The listing as a table; a column of the distributions when a plugin adds an environment."""
    table = Table(title="environments")
    table.add_column("name")
    table.add_column("tasks", justify="right")
    table.add_column("primitives")
    plugged = any(row["distribution"] for row in rows)
    if plugged:
        table.add_column("from")
    for row in rows:
        # A plugin's names and its distribution's are a third party's text: shown literally.
        table.add_row(
            shown(row["name"]),
            "?" if row["tasks"] is None else str(row["tasks"]),
            shown(", ".join(f"{p['name']}({', '.join(p['params'])})" for p in row["primitives"])),
            *([shown(row["distribution"] or "built in")] if plugged else []),
        )
    Console().print(table)
    hints = dict.fromkeys(env_profile(row["name"]).data_hint for row in rows if row["tasks"] is None)
    for hint in filter(None, hints):
        Console(stderr=True).print(f"?: {shown(hint)}")
