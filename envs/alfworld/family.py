"""The registration of the ALFWorld family: ``alfworld`` (every task type) and ``alfworld/<type>``, built from
a data folder of game files, with its profile (the seed's history window and budgets, LearnAct's ALFWorld
defaults, its texts under ``profile/``). Importing it does not load textworld."""

from __future__ import annotations

import os
from pathlib import Path

from learnact.envs.alfworld.commands import PRIMITIVES
from learnact.envs.alfworld.games import TASK_TYPES
from learnact.envs.base import Environment, PrimitiveSpec
from learnact.envs.family import EnvFamily, EnvProfile, EnvSpec, EnvSpecError, UnknownEnvironment

NAMES = ("alfworld", *(f"alfworld/{t}" for t in TASK_TYPES))

PROFILE = EnvProfile(
    benchmark="ALFWorld",
    window=50,
    max_steps=20,
    learn_steps=10,
    # The paper's ALFWorld settings: actions decomposed from the demonstrated plan, scored by how often the
    # agent calls them and whether it succeeds, the optimiser shown the whole trajectory.
    learnact={"style": "decompose", "score_terms": ("call_ratio", "success"), "history": "full"},
    report_by_type=True,
    learn_by_type=True,  # the paper learns a library per task type
    type_order=TASK_TYPES,
    data_hint="set $ALFWORLD_DATA to count the ALFWorld games",
    texts="learnact.envs.alfworld",
)


def data_dir(given: str | None) -> Path:
    """The ALFWorld data folder: the given one, else $ALFWORLD_DATA.

    :raises EnvSpecError: when neither names one.
    """
    value = given or os.environ.get("ALFWORLD_DATA")
    if not value:
        raise EnvSpecError(
            "alfworld",
            "no ALFWorld data folder",
            "give {alfworld_data} or set $ALFWORLD_DATA (the folder that holds json_2.1.1/)",
        )
    return Path(value)


def _check(name: str) -> str:
    """The task type ``name`` names ('' for every type).

    :raises UnknownEnvironment: for a type ALFWorld does not have.
    """
    task_type = name.partition("/")[2]
    if task_type and task_type not in TASK_TYPES:
        raise UnknownEnvironment(name, NAMES)
    return task_type


def build(spec: EnvSpec) -> Environment:
    """The games of the spec's split (and type) in its data folder.

    :raises UnknownEnvironment: for a type ALFWorld does not have.
    :raises EnvSpecError: when no data folder is given or set.
    :raises AlfworldDataError: for missing or malformed game files.
    """
    from learnact.envs.alfworld.env import AlfworldEnv

    task_type = _check(spec.name)
    return AlfworldEnv(data_dir(spec.alfworld_data), split=spec.split, task_types=[task_type] if task_type else None)


def primitives(name: str) -> list[PrimitiveSpec]:
    """LearnAct's ALFWorld primitives, the same for every type (no data needed).

    :raises UnknownEnvironment: for a type ALFWorld does not have.
    """
    _check(name)
    return list(PRIMITIVES)


def demonstration(spec: EnvSpec, task: str, task_type: str) -> Environment:
    """The game of the demonstration (a training game: its split is the first part of its task id), from the
    run's data folder.

    :raises EnvSpecError: when no data folder is given or set.
    :raises AlfworldDataError: for missing or malformed game files.
    """
    from learnact.envs.alfworld.env import AlfworldEnv

    split = task.split("/", 1)[0]
    return AlfworldEnv(data_dir(spec.alfworld_data), split=split, task_types=[task_type])


FAMILY = EnvFamily(build=build, profile=PROFILE, names=NAMES, primitives=primitives, demonstration=demonstration)
