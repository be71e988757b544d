"""Runs planned from what a person names (an environment, a method, a model) with the defaults of the method
registry and the environment profile applied: the step budget, the seeds, the answer length.

The CLI and a Python user plan the same way, so that ``learnact eval --env pddl/blockworld --method act``
and :func:`plan_evaluation` of the same names describe the same run (the same identity: one resumes the
other). Planning builds nothing and asks no server: :func:`evaluate` builds the model (from the plan's
:class:`ModelDescription`, as every Ray node does) and runs it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from learnact.actions.errors import LearnactError
from learnact.engine.agents import method_spec
from learnact.engine.llm import Backbone, ModelDescription, PriceTable, make_backbone
from learnact.engine.records import EpisodeRecord, ModelSettings, RunSettings, Summary
from learnact.engine.runs.evaluation import EvalConfig, run_evaluation
from learnact.engine.runs.executor import Executor
from learnact.engine.splits import TRAIN_PER_TYPE, Split, split_tasks
from learnact.envs import EnvSpec, env_profile, make_env, select_tasks
from learnact.sandbox import SandboxConfig

log = logging.getLogger(__name__)
EXPERT_MAX_STEPS = 100  # the expert's budget; a model method's is its environment profile's
DEFAULT_SEEDS = 3  # repetitions of a model method (the paper's); the expert is deterministic: one
DEFAULT_TEMPERATURE: float = ModelSettings.model_fields["temperature"].default


def planned_model(
    method: str, model: ModelDescription | None, temperature: float = DEFAULT_TEMPERATURE, max_tokens: int | None = None
) -> tuple[ModelDescription, ModelSettings] | None:
    """The resolved description and the recorded settings of ``method``'s model (None: the method uses none;
    ``model`` None: the default model). ``max_tokens`` None is the method's answer length. The settings'
    ``backbone`` (the identity) is filled in when the model is built (:func:`open_planned_model`).

    :raises UnknownMethod: for a method neither built in nor installed.
    :raises BackboneConfigError: for a description that does not resolve (see :meth:`ModelDescription.resolved`).
    """
    spec = method_spec(method)
    if not spec.uses_model:
        return None
    description = (model or ModelDescription()).resolved()
    assert description.model is not None  # resolved
    settings = ModelSettings(
        model=description.model,
        base_url=description.base_url,
        temperature=temperature,
        max_tokens=max_tokens or spec.max_tokens or ModelSettings.model_fields["max_tokens"].default,
    )
    return description, settings


def open_planned_model(description: ModelDescription, settings: ModelSettings) -> tuple[Backbone, ModelSettings]:
    """The backbone of ``description`` and ``settings`` naming it by its identity; the caller closes it.

    :raises LearnactError: when it cannot be built (see :func:`make_backbone`).
    """
    backbone = make_backbone(description)
    update = {"backbone": backbone.identity, "context_tokens": backbone.context_tokens}
    return backbone, settings.model_copy(update=update)


class RunChoice(BaseModel):
    """What a person names for a run, an evaluation or a learning run alike: the environment, the method, the
    model (None: the default model) and how it is asked (``max_tokens`` None: the method's answer length), the
    step budget (None: the default of the method and the environment) and the sandbox (None: the default).

    :raises pydantic.ValidationError: for an unknown field.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: EnvSpec
    method: str
    model: ModelDescription | None = None
    temperature: float = DEFAULT_TEMPERATURE
    max_tokens: int | None = None
    max_steps: int | None = None
    sandbox: SandboxConfig | None = None

    def planned_model(self) -> tuple[ModelDescription, ModelSettings] | None:
        """The method's model as :func:`planned_model` plans it."""
        return planned_model(self.method, self.model, self.temperature, self.max_tokens)


class EvalPlan(BaseModel):
    """An evaluation as planned: its config (the model's identity not yet known) and how to build its model
    (None for a method that uses none).

    :raises pydantic.ValidationError: for an unknown field.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    config: EvalConfig
    model: ModelDescription | None = None


def plan_evaluation(
    choice: RunChoice,
    *,
    tasks: str | None = None,
    seeds: int | None = None,
    workers: int = 1,
    test_on_rest: bool = False,
) -> EvalPlan:
    """The method of ``choice`` on the ``tasks`` of its environment (see :func:`select_tasks`; None: all), each
    with the seeds 0..``seeds``-1 (default: DEFAULT_SEEDS for a model method, one for the expert), at most
    ``choice.max_steps`` steps (default: the profile's for a model method, EXPERT_MAX_STEPS for the expert), the
    model as :func:`planned_model` plans it, ``workers`` episodes at a time.

    :raises UnknownMethod: for a method neither built in nor installed.
    :raises BackboneConfigError: for a model description that does not resolve.
    :raises LearnactError: when the environment cannot be built or the selection is refused.
    """
    env, uses_model = choice.env, method_spec(choice.method).uses_model
    planned = choice.planned_model()
    max_steps = choice.max_steps
    if max_steps is None:
        max_steps = env_profile(env.name).max_steps if uses_model else EXPERT_MAX_STEPS
    run = RunSettings(
        env=env,
        method=choice.method,
        max_steps=max_steps,
        sandbox=choice.sandbox or SandboxConfig(),
        model=planned[1] if planned else None,
        test_on_rest=test_on_rest,
    )
    chosen = tuple(select_tasks(make_env(env), tasks))
    repetitions = seeds or (DEFAULT_SEEDS if uses_model else 1)
    config = EvalConfig(run=run, tasks=chosen, seeds=tuple(range(repetitions)), workers=workers)
    return EvalPlan(config=config, model=planned[0] if planned else None)


def evaluate(
    plan: EvalPlan,
    out: Path,
    *,
    executor: Executor | None = None,
    prices: PriceTable | None = None,
    on_episode: Callable[[EpisodeRecord], None] = lambda record: None,
    on_start: Callable[[int, int], None] = lambda finished, total: None,
) -> Summary:
    """Run ``plan`` in the run directory ``out`` (see :func:`run_evaluation`: resumable, locked), its model
    built here for the run and closed at the end.

    :raises LearnactError: when the model cannot be built (see :func:`make_backbone`) or the run cannot go on
        (see :func:`run_evaluation`).
    """
    config, backbone = plan.config, None
    if plan.model is not None and config.run.model is not None:
        backbone, settings = open_planned_model(plan.model, config.run.model)
        config = config.model_copy(update={"run": config.run.model_copy(update={"model": settings})})
    try:
        return run_evaluation(
            config, out, on_episode=on_episode, on_start=on_start, backbone=backbone, prices=prices, executor=executor
        )
    finally:
        close_backbone(backbone)


class LearnPlan(BaseModel):
    """A learning run as planned: the settings of its attempts or scoring episodes, its training split, and
    how to build its model.

    :raises pydantic.ValidationError: for an unknown field.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    run: RunSettings
    split: Split
    model: ModelDescription


def plan_learning(choice: RunChoice, *, seed: int = 0, train_per_type: int = TRAIN_PER_TYPE) -> LearnPlan:
    """Learning the method of ``choice`` on ``train_per_type`` training tasks of each type of its environment
    chosen by ``seed``, at most ``choice.max_steps`` steps an attempt (default: the profile's learning budget),
    the model as :func:`planned_model` plans it.

    :raises UnknownMethod: for a method neither built in nor installed.
    :raises LearnactError: for a method that learns nothing, a model description that does not resolve, or an
        environment that cannot be built.
    """
    env, method, planned = choice.env, choice.method, choice.planned_model()
    if method_spec(method).learns is None or planned is None:
        raise LearnactError(f"the method {method} learns nothing", "give a {method} that learns notes or actions")
    run = RunSettings(
        env=env,
        method=method,
        max_steps=choice.max_steps or env_profile(env.name).learn_steps,
        sandbox=choice.sandbox or SandboxConfig(),
        model=planned[1],
    )
    split = split_tasks(make_env(env).tasks(), seed, per_type=train_per_type)
    return LearnPlan(run=run, split=split, model=planned[0])


def close_backbone(backbone: Backbone | None) -> None:
    """Close ``backbone`` (None: nothing); a failure to close is a warning, never hiding a run's outcome."""
    if backbone is None:
        return
    try:
        backbone.close()
    except (LearnactError, OSError) as exc:
        log.warning("closing the model backbone: %s", exc)
