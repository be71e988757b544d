"""The registration of the PDDL family: ``pddl/<domain>`` (a built-in problem set) and ``pddl`` (external
domain and problem files), with its profile (the seed's history window and budgets, its domain texts,
demonstrations and worked examples under ``profile/``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from learnact.envs.base import Environment, PrimitiveSpec
from learnact.envs.family import EnvFamily, EnvProfile, EnvSpec, EnvSpecError, UnknownEnvironment
from learnact.envs.pddl.env import DOMAINS, PddlEnv

NAMES = (*(f"pddl/{d}" for d in DOMAINS), "pddl")

PROFILE = EnvProfile(
    benchmark="robotic planning (PDDL)",
    window=20,
    max_steps=30,
    learn_steps=10,
    final_state_observations=True,  # every observation is the whole state: the last one says it all
    texts="learnact.envs.pddl",
)


def expand_problem_paths(paths: Sequence[str | Path], domain: str | Path | None = None) -> tuple[str, ...]:
    """Problem files from files and folders: a folder stands for its ``*.pddl`` files, sorted by name.
    The domain file is left out (``--pddl-problems probs/*.pddl`` may match it); duplicates once.

    :raises EnvSpecError: for a folder without ``.pddl`` files.
    """
    skip = Path(domain).resolve() if domain else None
    files: list[str] = []
    for given in map(Path, paths):
        if given.is_dir():
            found = sorted(p for p in given.glob("*.pddl") if p.is_file())
            if not found:
                raise EnvSpecError(
                    "pddl", f"{given} is a folder without .pddl files", "give problem files or their folder"
                )
            files += [str(p) for p in found if p.resolve() != skip]
        elif skip is None or not given.exists() or given.resolve() != skip:
            files.append(str(given))
    return tuple(dict.fromkeys(files))


def build(spec: EnvSpec) -> Environment:
    """``pddl/<domain>`` (no files may be given) or ``pddl`` (external files, which must be given).

    :raises UnknownEnvironment: for a domain that is not built in.
    :raises EnvSpecError: for files given to a built-in set, or none given to ``pddl``.
    :raises PddlError: for PDDL files that cannot be read or used.
    """
    domain = spec.name.partition("/")[2]
    if domain:
        if domain not in DOMAINS:
            raise UnknownEnvironment(spec.name, NAMES)
        if spec.pddl_domain or spec.pddl_problems:
            raise EnvSpecError(
                spec.name,
                f"'{spec.name}' has built-in problems",
                "{pddl_domain} and {pddl_problems} are for the environment 'pddl' (external files)",
            )
        return PddlEnv.builtin(domain)
    if not spec.pddl_domain or not spec.pddl_problems:
        raise EnvSpecError(
            spec.name,
            "the environment 'pddl' needs external files",
            "give {pddl_domain} and {pddl_problems} (files or folders), or use a built-in set such as pddl/blockworld",
        )
    problems = expand_problem_paths(spec.pddl_problems, spec.pddl_domain)
    return PddlEnv.from_files(Path(spec.pddl_domain), [Path(p) for p in problems])


def primitives(name: str) -> list[PrimitiveSpec]:
    """The primitives of a built-in set (its domain file is read); ``pddl`` alone has none without files.

    :raises UnknownEnvironment: for ``pddl`` or a domain that is not built in.
    """
    if name == "pddl":
        raise UnknownEnvironment(name, NAMES[:-1])
    return build(EnvSpec(name=name)).primitives()


def demonstration(spec: EnvSpec, task: str, task_type: str) -> Environment:
    """The demonstration problem of the domain ``task_type`` (no task of the built-in set).

    :raises UnknownEnvironment: for a domain that is not built in.
    """
    return PddlEnv.demonstration(task_type)


FAMILY = EnvFamily(build=build, profile=PROFILE, names=NAMES, primitives=primitives, demonstration=demonstration)
