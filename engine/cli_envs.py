"""`learnact envs list`: the environments, their task counts and primitives."""

from __future__ import annotations

import json
import logging
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from learnact.actions import LearnactError
from learnact.envs import EnvSpec, env_names, make_env, primitive_specs

log = logging.getLogger(__name__)


def listing() -> list[dict]:
    """Every environment with its task count (None when its data cannot be found) and primitives."""
    rows = []
    for name in env_names():
        if name == "pddl":
            continue  # external files only: no tasks until given some
        try:
            tasks: int | None = len(make_env(EnvSpec(name=name)).tasks())
        except LearnactError as exc:  # ALFWorld without a data folder: primitives are known, games are not
            log.info("cannot count the tasks of %s: %s", name, exc)
            tasks = None
        rows.append(
            {
                "name": name,
                "tasks": tasks,
                "primitives": [
                    {"name": p.name, "params": [q.name for q in p.params], "doc": p.doc} for p in primitive_specs(name)
                ],
            }
        )
    return rows


def list_envs(
    json_output: Annotated[bool, typer.Option("--json", help="print JSON only")] = False,
) -> None:
    """List every environment with its task count and primitive actions."""
    rows = listing()
    if json_output:
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    table = Table(title="environments")
    table.add_column("name")
    table.add_column("tasks", justify="right")
    table.add_column("primitives")
    for row in rows:
        table.add_row(
            row["name"],
            "?" if row["tasks"] is None else str(row["tasks"]),
            ", ".join(f"{p['name']}({', '.join(p['params'])})" for p in row["primitives"]),
        )
    Console().print(table)
    if any(row["tasks"] is None for row in rows):
        Console(stderr=True).print("?: set $ALFWORLD_DATA to count the ALFWorld games")
