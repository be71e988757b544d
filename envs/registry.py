"""Environment names → environment instances.

Names: ``pddl/<domain>`` (built-in problems of tyreworld, blockworld, barman, gripper), ``pddl`` (external
files: a domain file and problem files), ``alfworld`` or ``alfworld/<type>`` (game files from a data folder).

Any other family comes from a plugin: an installed distribution whose entry point in the group
``learnact.envs`` is named after the family and names an :data:`EnvFactory`. It is looked up only for a name
that is not built in, so a broken plugin never breaks a built-in name, and it can never replace one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from learnact.actions.errors import LearnactError
from learnact.actions.plugins import ENV_GROUP, Discovery, discover
from learnact.envs.base import Environment, PrimitiveSpec, UnknownTask


class EnvSpec(BaseModel):
    """Everything needed to build an environment: serialisable, so an episode can run anywhere.

    :raises pydantic.ValidationError: for an unknown field or a value of the wrong type.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    pddl_domain: str | None = None
    pddl_problems: tuple[str, ...] = ()
    alfworld_data: str | None = None
    split: str = "valid_unseen"


class EnvSpecError(LearnactError):
    """Settings of an EnvSpec that cannot build the environment ``env``; the remedy names the settings."""

    def __init__(self, env: str, problem: str, remedy: str = "") -> None:
        self.env = env
        super().__init__(problem, remedy)


class UnknownEnvironment(EnvSpecError):
    """``env`` names no environment; ``known`` lists those that exist."""

    def __init__(self, env: str, known: Sequence[str]) -> None:
        self.known = tuple(known)
        super().__init__(env, f"unknown environment '{env}'; known: {', '.join(self.known)}")


class TaskSelectionError(LearnactError):
    """``selection`` chooses no task of ``env``, or a range outside its tasks."""

    def __init__(self, selection: str, env: str, problem: str) -> None:
        self.selection = selection
        self.env = env
        super().__init__(problem, "give indices and ranges like 0-4,7 or task ids")


BUILTIN_FAMILIES = ("pddl", "alfworld")

EnvFactory = Callable[[EnvSpec], Environment]
"""What an entry point of the group ``learnact.envs`` names: given the spec of ``<family>`` or
``<family>/<variant>`` (the entry point's name is the family), the environment, or a :class:`LearnactError`
(:class:`UnknownEnvironment` for a variant it does not have, :class:`EnvSpecError` for settings it cannot
use) that the user sees as it is. An :class:`Environment` subclass whose constructor takes the spec fits."""


def env_names() -> list[str]:
    """The built-in environments (plugins: :func:`env_plugins`)."""
    from learnact.envs.alfworld import TASK_TYPES
    from learnact.envs.pddl import DOMAINS

    return [f"pddl/{d}" for d in DOMAINS] + ["pddl", "alfworld"] + [f"alfworld/{t}" for t in TASK_TYPES]


def env_plugins() -> Discovery:
    """The environment families installed distributions add (their modules are not imported); an entry point
    named after a built-in family is refused."""
    return discover(ENV_GROUP, BUILTIN_FAMILIES)


def _unknown(name: str) -> UnknownEnvironment:
    return UnknownEnvironment(name, env_names() + sorted(env_plugins().plugins))


def _plugin_env(spec: EnvSpec) -> Environment:
    """The environment of a plugin's family.

    :raises UnknownEnvironment: when no plugin has the family.
    :raises PluginError: when the plugin is refused or broken: it cannot be imported, names no callable,
        fails, or builds something else than an environment.
    """
    plugin = env_plugins().find(spec.name.partition("/")[0])
    if plugin is None:
        raise _unknown(spec.name)
    factory = plugin.load()
    if not callable(factory):
        raise plugin.error(
            f"names a {type(factory).__name__}, not a callable that builds an Environment from an EnvSpec"
        )
    env = plugin.call(f"building the environment '{spec.name}'", factory, spec)
    if not isinstance(env, Environment):
        raise plugin.error(f"returned {type(env).__name__} for '{spec.name}', not an Environment (learnact.envs)")
    if not isinstance(getattr(env, "name", None), str):
        raise plugin.error(f"built an environment for '{spec.name}' without a name (its attribute `name`)")
    return env


def alfworld_data_dir(given: str | None) -> Path:
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


def make_env(spec: EnvSpec | str) -> Environment:
    """Build the environment named by ``spec`` (a name alone: its default settings); a family that is not
    built in comes from a plugin (:data:`EnvFactory`).

    :raises UnknownEnvironment: for a name that is not an environment.
    :raises PluginError: for a plugin that is refused or broken (``learnact.actions.plugins``).
    :raises LearnactError: that a plugin's factory raised (its own :class:`EnvSpecError`, ...).
    :raises EnvSpecError: for settings that do not fit it (files for a built-in set, none for ``pddl``,
        no ALFWorld data folder).
    :raises PddlError: for PDDL files that cannot be read or used (``learnact.envs.pddl``).
    :raises AlfworldDataError: for missing or malformed ALFWorld data (``learnact.envs.alfworld``).
    """
    if isinstance(spec, str):
        spec = EnvSpec(name=spec)
    family, _, variant = spec.name.partition("/")
    if family == "pddl":
        from learnact.envs.pddl import DOMAINS, PddlEnv

        if variant:
            if variant not in DOMAINS:
                raise _unknown(spec.name)
            if spec.pddl_domain or spec.pddl_problems:
                raise EnvSpecError(
                    spec.name,
                    f"'{spec.name}' has built-in problems",
                    "{pddl_domain} and {pddl_problems} are for the environment 'pddl' (external files)",
                )
            return PddlEnv.builtin(variant)
        if not spec.pddl_domain or not spec.pddl_problems:
            raise EnvSpecError(
                spec.name,
                "the environment 'pddl' needs external files",
                "give {pddl_domain} and {pddl_problems} (files or folders), "
                "or use a built-in set such as pddl/blockworld",
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
    return _plugin_env(spec)


def primitive_specs(name: str) -> list[PrimitiveSpec]:
    """The primitives of an environment by name, without needing its data files (a plugin's environment is
    built for them).

    :raises UnknownEnvironment: for a name that is not an environment with built-in primitives.
    :raises PluginError: for a plugin that is refused or broken.
    :raises LearnactError: that a plugin raised building its environment.
    """
    family, _, variant = name.partition("/")
    if family == "alfworld":
        from learnact.envs.alfworld import PRIMITIVES, TASK_TYPES

        if variant and variant not in TASK_TYPES:
            raise _unknown(name)
        return list(PRIMITIVES)
    if family == "pddl" and variant:
        return make_env(name).primitives()
    if family in BUILTIN_FAMILIES:
        raise _unknown(name)
    return _plugin_env(EnvSpec(name=name)).primitives()


def select_tasks(env: Environment, selection: str | None) -> list[str]:
    """Task ids chosen by ``selection``: indices and ranges (``0-4,7``) or task ids, comma-separated;
    None: every task. An empty or blank selection (an unset shell variable) chooses none and is refused.

    :raises UnknownTask: for a part that is neither an index, a range nor a task id.
    :raises TaskSelectionError: for a range outside the tasks, or a selection that chooses none.
    """
    ids = [t.id for t in env.tasks()]
    if selection is None:
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
                    raise TaskSelectionError(
                        part,
                        env.name,
                        f"task range '{part}' is outside 0-{len(ids) - 1} ({len(ids)} tasks in {env.name})",
                    )
                chosen.extend(ids[first : last + 1])
                continue
            raise UnknownTask(part, env.name, ids, "give indices and ranges like 0-4,7 or task ids")
    chosen = list(dict.fromkeys(chosen))
    if not chosen:
        raise TaskSelectionError(
            str(selection),
            env.name,
            f"the selection '{selection}' chooses no task of {env.name}; leave out the option to run every task",
        )
    return chosen
