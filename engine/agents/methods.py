"""Methods by name: what ``--method`` names, built in or added by a plugin.

A method is registered as one :class:`MethodSpec`: the factory of its policy (given a
:class:`PolicyContext`: the environment just reset, the model and what was learned), whether it uses a
model, its default answer length, and what ``learnact learn`` learns for it (notes by reflection, or a
library of actions), if anything. Records keep a method by its name, so a run of a plugin's method reads
like any other.

A distribution adds a method through an entry point of the group ``learnact.methods`` named after the
method and naming a :class:`MethodSpec` (a plugin's method may not learn: ``learns`` None; the learning
routines are the built-in ones, chosen by the kind of artifact). A built-in name cannot be replaced.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum

from learnact.actions.errors import LearnactError
from learnact.actions.plugins import METHOD_GROUP, Discovery, Plugin, discover
from learnact.engine.agents.policy import (
    PROGRAM_MAX_TOKENS,
    ExpertPolicy,
    ModelPolicy,
    Policy,
    PolicyContext,
    ProgramPolicy,
)
from learnact.engine.records import Method


class Learns(str, Enum):
    """What ``learnact learn`` learns for a method, and ``learnact eval`` gives it."""

    notes = "notes"  # lessons of reflection on the training tasks (--notes RUN)
    library = "library"  # a library of learned actions (--library RUN)


PolicyFactory = Callable[[PolicyContext], Policy]


@dataclass(frozen=True)
class MethodSpec:
    """A method as registered. ``max_tokens``: its default answer length (None: the model settings' default);
    ``learns``: what ``learnact learn`` learns for it (None: nothing)."""

    make_policy: PolicyFactory
    uses_model: bool = True
    max_tokens: int | None = None
    learns: Learns | None = None
    description: str = ""


class UnknownMethod(LearnactError):
    """``method`` names no method; ``known`` lists those that exist."""

    def __init__(self, method: str, known: list[str]) -> None:
        self.method, self.known = method, tuple(known)
        super().__init__(f"unknown method '{method}'", f"choose one of: {', '.join(self.known)}")


def _model_policy(react: bool) -> PolicyFactory:
    """act or react, shown the notes and learned actions the context carries."""

    def make(context: PolicyContext) -> Policy:
        return ModelPolicy(context, react=react)

    return make


BUILTIN_METHODS: dict[str, MethodSpec] = {
    Method.expert: MethodSpec(
        lambda context: ExpertPolicy(context.env), uses_model=False, description="the environment's expert"
    ),
    Method.act: MethodSpec(_model_policy(False), description="a model writes one line of code a step"),
    Method.react: MethodSpec(_model_policy(True), description="act, with Think: steps"),
    Method.act_reflexion: MethodSpec(
        _model_policy(False), learns=Learns.notes, description="act, with the notes of its reflections"
    ),
    Method.react_reflexion: MethodSpec(
        _model_policy(True), learns=Learns.notes, description="react, with the notes of its reflections"
    ),
    Method.code_as_policy: MethodSpec(
        ProgramPolicy, max_tokens=PROGRAM_MAX_TOKENS, description="a model writes one program per task"
    ),
    Method.learnact: MethodSpec(
        _model_policy(False), learns=Learns.library, description="act, with the actions learned by learnact learn"
    ),
}


def method_plugins() -> Discovery:
    """The methods installed distributions add (their modules are not imported); a built-in name is refused."""
    return discover(METHOD_GROUP, BUILTIN_METHODS)


def method_names() -> list[str]:
    """Every usable method: the built-in ones, then the plugins' by name."""
    return [*BUILTIN_METHODS, *sorted(method_plugins().plugins)]


def method_spec(name: str) -> MethodSpec:
    """The method called ``name``.

    :raises UnknownMethod: for a name that is neither built in nor a plugin's.
    :raises PluginError: for a plugin that is refused, cannot be loaded, or names something else than a
        MethodSpec.
    """
    if name in BUILTIN_METHODS:
        return BUILTIN_METHODS[name]
    plugin = method_plugins().find(name)
    if plugin is None:
        raise UnknownMethod(name, method_names())
    spec = plugin.load()
    if not isinstance(spec, MethodSpec):
        raise plugin.error(f"names a {type(spec).__name__}, not a MethodSpec (learnact.engine.agents.methods)")
    if spec.learns is not None:
        raise plugin.error("declares what it learns; a plugin's method cannot learn yet (learns=None)")
    return _guarded(spec, plugin)


def _guarded(spec: MethodSpec, plugin: Plugin) -> MethodSpec:
    """``spec`` whose policy factory reports a failure or a wrong result as the plugin's error."""

    def make(context: PolicyContext) -> Policy:
        policy = plugin.call("building its policy", spec.make_policy, context)
        if not isinstance(policy, Policy):
            raise plugin.error(f"built a {type(policy).__name__}, not a Policy (learnact.engine.agents)")
        return policy

    return MethodSpec(make, spec.uses_model, spec.max_tokens, spec.learns, spec.description)


def make_policy(method: str, context: PolicyContext) -> Policy:
    """The policy of ``method`` for the task ``context.env`` was just reset to. Notes reach only a method that
    learns notes, learned actions only one that learns a library.

    :raises UnknownMethod: for a name that is not a method.
    :raises PluginError: for a plugin's method that is broken.
    :raises ValueError: for a model method without a backbone or model settings.
    """
    spec = method_spec(method)
    notes = context.notes if spec.learns is Learns.notes else ()
    actions = context.actions if spec.learns is Learns.library else None
    return spec.make_policy(replace(context, notes=notes, actions=actions))
