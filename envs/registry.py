"""Environment names → environment instances.

Names: ``pddl/<domain>`` (built-in problems of tyreworld, blockworld, barman, gripper), ``pddl`` (external
files: a domain file and problem files), ``alfworld`` or ``alfworld/<type>`` (game files from a data folder).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from learnact.envs.base import Environment, PrimitiveSpec


class EnvSpec(BaseModel):
    """Everything needed to build an environment: serialisable, so an episode can run anywhere."""

    model_config = ConfigDict(frozen=True)

    name: str
    pddl_domain: str | None = None
    pddl_problems: tuple[str, ...] = ()
    alfworld_data: str | None = None
    split: str = "valid_unseen"


class UnknownEnvironment(ValueError):
    pass


def env_names() -> list[str]:
    from learnact.envs.alfworld import TASK_TYPES
    from learnact.envs.pddl import DOMAINS

    return [f"pddl/{d}" for d in DOMAINS] + ["pddl", "alfworld"] + [f"alfworld/{t}" for t in TASK_TYPES]


def _unknown(name: str) -> UnknownEnvironment:
    return UnknownEnvironment(f"unknown environment '{name}'; known: {', '.join(env_names())}")


def alfworld_data_dir(given: str | None) -> Path:
    """The ALFWorld data folder: the given one, else $ALFWORLD_DATA."""
    value = given or os.environ.get("ALFWORLD_DATA")
    if not value:
        raise ValueError(
            "no ALFWorld data folder: pass --alfworld-data DIR or set $ALFWORLD_DATA "
            "(the folder that holds json_2.1.1/)"
        )
    return Path(value)


def expand_problem_paths(paths: Sequence[str | Path], domain: str | Path | None = None) -> tuple[str, ...]:
    """Problem files from files and folders: a folder stands for its ``*.pddl`` files, sorted by name.
    The domain file is left out (``--pddl-problems probs/*.pddl`` may match it); duplicates once."""
    skip = Path(domain).resolve() if domain else None
    files: list[str] = []
    for given in map(Path, paths):
        if given.is_dir():
            found = sorted(p for p in given.glob("*.pddl") if p.is_file())
            if not found:
                raise ValueError(f"{given} is a folder without .pddl files; give problem files or their folder")
            files += [str(p) for p in found if p.resolve() != skip]
        elif skip is None or not given.exists() or given.resolve() != skip:
            files.append(str(given))
    return tuple(dict.fromkeys(files))


def make_env(spec: EnvSpec | str) -> Environment:
    """Build the environment named by ``spec``; UnknownEnvironment / ValueError say what is wrong."""
    if isinstance(spec, str):
        spec = EnvSpec(name=spec)
    family, _, variant = spec.name.partition("/")
    if family == "pddl":
        from learnact.envs.pddl import DOMAINS, PddlEnv

        if variant:
            if variant not in DOMAINS:
                raise _unknown(spec.name)
            if spec.pddl_domain or spec.pddl_problems:
                raise ValueError(f"'{spec.name}' uses built-in problems; use --env pddl for external files")
            return PddlEnv.builtin(variant)
        if not spec.pddl_domain or not spec.pddl_problems:
            raise ValueError(
                "--env pddl needs external files: --pddl-domain FILE --pddl-problems FILE...|DIR "
                "(or use a built-in set such as pddl/blockworld)"
            )
        problems = expand_problem_paths(spec.pddl_problems, spec.pddl_domain)
        return PddlEnv.from_files(Path(spec.pddl_domain), [Path(p) for p in problems])
    if family == "alfworld":
        from learnact.envs.alfworld import TASK_TYPES, AlfworldEnv

        if variant and variant not in TASK_TYPES:
            raise _unknown(spec.name)
        return AlfworldEnv(
            alfworld_data_dir(spec.alfworld_data),
            split=spec.split,
            task_types=[variant] if variant else None,
        )
    raise _unknown(spec.name)


def primitive_specs(name: str) -> list[PrimitiveSpec]:
    """The primitives of an environment by name, without needing its data files."""
    family, _, variant = name.partition("/")
    if family == "alfworld":
        from learnact.envs.alfworld import PRIMITIVES, TASK_TYPES

        if variant and variant not in TASK_TYPES:
            raise _unknown(name)
        return list(PRIMITIVES)
    if family == "pddl" and variant:
        return make_env(name).primitives()
    raise _unknown(name)


def select_tasks(env: Environment, selection: str | None) -> list[str]:
    """Task ids chosen by ``selection``: indices and ranges (``0-4,7``) or task ids, comma-separated."""
    ids = [t.id for t in env.tasks()]
    if not selection:
        chosen = ids
    else:
        chosen = []
        for part in (p.strip() for p in selection.split(",")):
            if not part:
                continue
            if part in ids:
                chosen.append(part)
                continue
            lo, dash, hi = part.partition("-")
            if lo.isdigit() and (not dash or hi.isdigit()):
                first, last = int(lo), int(hi) if dash else int(lo)
                if first > last or last >= len(ids):
                    raise ValueError(
                        f"task range '{part}' is outside 0-{len(ids) - 1} ({len(ids)} tasks in {env.name})"
                    )
                chosen.extend(ids[first : last + 1])
                continue
            raise ValueError(
                f"unknown task '{part}' in {env.name}: give indices/ranges like 0-4,7 or task ids "
                f"(e.g. {ids[0] if ids else 'none'}); `learnact envs list` shows the counts"
            )
    chosen = list(dict.fromkeys(chosen))
    if not chosen:
        raise ValueError(f"the selection '{selection}' chooses no task of {env.name}")
    return chosen
