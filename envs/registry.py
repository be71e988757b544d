"""Environment names → environment instances and profiles, through the registered families.

Names are ``<family>`` or ``<family>/<variant>``. The built-in families: ``pddl/<domain>`` (built-in problems
of tyreworld, blockworld, barman, gripper), ``pddl`` (external files: a domain file and problem files),
``alfworld`` or ``alfworld/<type>`` (game files from a data folder). Each is registered as an
:class:`EnvFamily` named in :data:`BUILTIN_FAMILIES` as an entry point names a plugin's.

Any other family comes from a plugin: an installed distribution whose entry point in the group
``learnact.envs`` is named after the family and names an :class:`EnvFamily` (or an :data:`EnvFactory`
alone). It is looked up only for a name that is not built in, so a broken plugin never breaks a built-in
name, and it can never replace one.
"""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint

from learnact.actions.errors import LearnactError
from learnact.actions.plugins import ENV_GROUP, Discovery, Plugin, discover
from learnact.envs.base import Environment, PrimitiveSpec, UnknownTask
from learnact.envs.family import (
    NEUTRAL_PROFILE,
    EnvFamily,
    EnvProfile,
    EnvSpec,
    UnknownEnvironment,
)

log = logging.getLogger(__name__)


class TaskSelectionError(LearnactError):
    """``selection`` chooses no task of ``env``, or a range outside its tasks."""

    def __init__(self, selection: str, env: str, problem: str) -> None:
        self.selection = selection
        self.env = env
        super().__init__(problem, "give indices and ranges like 0-4,7 or task ids")


BUILTIN_FAMILIES = {
    "pddl": "learnact.envs.pddl.family:FAMILY",
    "alfworld": "learnact.envs.alfworld.family:FAMILY",
}
"""The built-in families, named as entry points name a plugin's (``module:attribute``)."""

_warned: set[str] = set()  # plugin families already warned about for having no profile


def env_plugins() -> Discovery:
    """The environment families installed distributions add (their modules are not imported); an entry point
    named after a built-in family is refused."""
    return discover(ENV_GROUP, BUILTIN_FAMILIES)


def env_names() -> list[str]:
    """The built-in environments (plugins: :func:`env_plugins`)."""
    return [name for family in BUILTIN_FAMILIES for name in _builtin(family).names or (family,)]


def _builtin(family: str) -> EnvFamily:
    return EntryPoint(family, BUILTIN_FAMILIES[family], ENV_GROUP).load()  # type: ignore[no-any-return]


def _unknown(name: str) -> UnknownEnvironment:
    return UnknownEnvironment(name, env_names() + sorted(env_plugins().plugins))


def _registered(name: str) -> tuple[EnvFamily, Plugin | None]:
    """The family of the environment ``name`` (``<family>`` or ``<family>/<variant>``), and the plugin that
    registers it (None for a built-in one). A plugin's entry point names an :class:`EnvFamily`, or an
    :data:`EnvFactory` alone (its ``profile`` attribute, when it has one, is its profile).

    :raises UnknownEnvironment: for a family that is neither built in nor a plugin's.
    :raises PluginError: for a plugin that is refused, cannot be loaded or names something else.
    """
    family = name.partition("/")[0]
    if family in BUILTIN_FAMILIES:
        return _builtin(family), None
    plugin = env_plugins().find(family)
    if plugin is None:
        raise _unknown(name)
    target = plugin.load()
    if isinstance(target, EnvFamily):
        registered = target
    elif callable(target):
        registered = EnvFamily(build=target, profile=getattr(target, "profile", None))
    else:
        raise plugin.error(
            f"names a {type(target).__name__}, not an EnvFamily or a callable that builds an Environment from an "
            "EnvSpec"
        )
    if registered.profile is not None and not isinstance(registered.profile, EnvProfile):
        raise plugin.error(f"gives a profile of type {type(registered.profile).__name__}, not an EnvProfile")
    return registered, plugin


def make_env(spec: EnvSpec | str) -> Environment:
    """Build the environment named by ``spec`` (a name alone: its default settings) with its family's factory.

    :raises UnknownEnvironment: for a name that is not an environment.
    :raises PluginError: for a plugin that is refused or broken: it cannot be imported, names no callable,
        fails, or builds something else than an environment.
    :raises LearnactError: that a plugin's factory raised (its own :class:`EnvSpecError`, ...).
    :raises EnvSpecError: for settings that do not fit it (files for a built-in set, none for ``pddl``,
        no ALFWorld data folder).
    :raises PddlError: for PDDL files that cannot be read or used (``learnact.envs.pddl``).
    :raises AlfworldDataError: for missing or malformed ALFWorld data (``learnact.envs.alfworld``).
    """
    if isinstance(spec, str):
        spec = EnvSpec(name=spec)
    family, plugin = _registered(spec.name)
    if plugin is None:
        return family.build(spec)
    env = plugin.call(f"building the environment '{spec.name}'", family.build, spec)
    if not isinstance(env, Environment):
        raise plugin.error(f"returned {type(env).__name__} for '{spec.name}', not an Environment (learnact.envs)")
    if not isinstance(getattr(env, "name", None), str):
        raise plugin.error(f"built an environment for '{spec.name}' without a name (its attribute `name`)")
    return env


def primitive_specs(name: str) -> list[PrimitiveSpec]:
    """The primitives of an environment by name, without needing its data files where its family can say
    them (otherwise the environment is built for them).

    :raises UnknownEnvironment: for a name that is not an environment with built-in primitives.
    :raises PluginError: for a plugin that is refused or broken.
    :raises LearnactError: that a plugin raised building its environment.
    """
    family, plugin = _registered(name)
    if family.primitives is None:
        return make_env(EnvSpec(name=name)).primitives()
    if plugin is None:
        return family.primitives(name)
    return plugin.call(f"listing the primitives of '{name}'", family.primitives, name)


def demonstration_env(spec: EnvSpec, task: str, task_type: str) -> Environment | None:
    """An environment holding ``task`` (of type ``task_type``: a stored demonstration's, of ``spec``'s family),
    None when the family opens none.

    :raises UnknownEnvironment: for a name that is not an environment.
    :raises PluginError: for a plugin that is refused or broken.
    :raises LearnactError: when the family cannot open it (its data missing).
    """
    family, plugin = _registered(spec.name)
    if family.demonstration is None:
        return None
    if plugin is None:
        return family.demonstration(spec, task, task_type)
    return plugin.call("opening its demonstration's task", family.demonstration, spec, task, task_type)


def env_profile(name: str) -> EnvProfile:
    """The profile of the environment ``name``'s family; for a plugin family that gives none, the neutral
    profile, with a warning (once per family and process).

    :raises UnknownEnvironment: for a name that is not an environment.
    :raises PluginError: for a plugin that is refused or broken.
    """
    family, plugin = _registered(name)
    if family.profile is not None:
        return family.profile
    if plugin is not None and plugin.name not in _warned:
        _warned.add(plugin.name)
        log.warning(
            "the environment family '%s' (%s) gives no profile: neutral defaults are used (a history of %d steps, "
            "%d steps per episode, no domain text or demonstration); its author can register an EnvFamily with an "
            "EnvProfile",
            plugin.name,
            plugin.distribution,
            NEUTRAL_PROFILE.window,
            NEUTRAL_PROFILE.max_steps,
        )
    return NEUTRAL_PROFILE


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
