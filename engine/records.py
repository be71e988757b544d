"""Records of a run: what one episode did, step by step, and the summary of many."""

from __future__ import annotations

import math
from enum import Enum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from learnact.actions.models import ActionSet
from learnact.envs import EnvSpec
from learnact.sandbox import ExecutionResult, SandboxConfig


class Method(str, Enum):
    """The built-in methods' names (compare equal to, print and serialise as their value). Records keep a method
    as its name, which may be a plugin's; what a method is and does is its registration
    (``learnact.engine.agents.methods``)."""

    expert = "expert"  # the environment's expert (a planner, ALFWorld's handcoded expert), as code
    act = "act"  # a language model writes one line of code a step
    react = "react"  # the same, with Think: steps that are answered and not executed
    act_reflexion = "act_reflexion"  # act, with the notes its reflections left on the training tasks
    react_reflexion = "react_reflexion"  # react, with the same
    code_as_policy = "code_as_policy"  # a language model writes one program per task, run once
    learnact = "learnact"  # act, with the actions learned by `learnact learn` next to the primitives

    def __str__(self) -> str:
        return self.value


MethodName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
"""A method as records keep it: its name (a built-in :class:`Method` or a plugin's)."""


class ModelSettings(BaseModel):
    """The language model of a model method: part of a run's identity, so that a resumed run never mixes
    models. The API key is not part of it (it is never written to a run directory). The request's seed is
    not either: it is the episode's (:attr:`EpisodeSpec.seed`).

    :raises pydantic.ValidationError: for an unknown field or a value out of range.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    base_url: str | None = None
    # The backbone's identity (the server's URL, or the GGUF file and its sha256): the same model name on
    # another server or another file is another run.
    backbone: str | None = None
    # The context the agent's histories are trimmed to (the local model's n_ctx): another trims other prompts.
    context_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(256, gt=0)


class RunSettings(BaseModel):
    """What makes a run, shared by all its episodes: the environment, the method, the step budget and
    the sandbox. It is the run's identity: a run directory resumes only a run whose settings are equal
    as a whole. The task selection and the number of workers are not part of it (shards over other
    tasks add their episodes to the same directory).

    :raises pydantic.ValidationError: for an unknown field or a value out of range (it names the field).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: EnvSpec
    method: MethodName = Method.expert.value
    max_steps: int = Field(100, gt=0, description="steps per episode")
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    model: ModelSettings | None = None  # the language model of a model method
    # act_reflexion/react_reflexion: the lessons their reflections wrote on the training tasks, shown to
    # the agent; learnact: the learned actions, loaded into every episode's sandbox and shown to the agent.
    # Both travel inside the settings so that an EpisodeSpec stays self-contained (another executor, another
    # machine) and a run directory never mixes two sets of notes or actions.
    notes: tuple[str, ...] = ()
    actions: ActionSet | None = None
    # learnact with a library per task type (a family that learns by type, ALFWorld): an episode gets its type's
    actions_by_type: dict[str, ActionSet] = Field(default_factory=dict)
    # The training tasks of the learning run whose notes or actions this run uses (what --test-on-rest leaves out).
    trained_on: tuple[str, ...] = ()
    # Evaluate each seed on the tasks outside its training tasks (``trained_on``, else the seed's split) rather
    # than on all (the paper's setting).
    test_on_rest: bool = False

    @model_validator(mode="after")
    def _one_kind_of_actions(self) -> RunSettings:
        if self.actions is not None and self.actions_by_type:
            raise ValueError("give the learned actions either for every task type (actions) or per type, not both")
        return self

    def actions_for(self, task_type: str) -> ActionSet | None:
        """The learned actions an episode of ``task_type`` gets: its type's set when the run has one per type
        (none for a type that has none), else the run's."""
        return self.actions_by_type.get(task_type) if self.actions_by_type else self.actions


class EpisodeSpec(BaseModel):
    """A self-contained unit of work: everything needed to run one episode anywhere. ``seed`` is the
    repetition (``--seeds``): the seed of every model request of the episode, and of the run's split."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run: RunSettings
    task: str
    seed: int = Field(0, ge=0)

    @property
    def key(self) -> str:
        """The episode's name in ``calls.jsonl`` and logs: the task, and the seed after ``#``."""
        return episode_key(self.task, self.seed)


def episode_key(task: str, seed: int) -> str:
    """How an episode is named where one string must say which (``blockworld-01#2``)."""
    return f"{task}#{seed}"


class StepRecord(BaseModel):
    """One step: the code run (``result``), or a thought (``thought``, answered and not run), or a model
    answer holding no code (``code`` empty, ``result`` None); ``answer`` is the model's raw text."""

    model_config = ConfigDict(frozen=True)

    index: int
    code: str
    result: ExecutionResult | None
    observation: str
    duration_s: float
    thought: str | None = None
    answer: str | None = None


class TokenUsage(BaseModel):
    """Model calls of an episode or a run: how many, from the cache, failed, their tokens and estimated cost."""

    model_config = ConfigDict(frozen=True)

    calls: int = 0
    cached_calls: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(**{name: getattr(self, name) + getattr(other, name) for name in type(self).model_fields})


class EpisodeStatus(str, Enum):
    """Whether an episode ran to its end (serialised as its value, so records keep the same strings)."""

    finished = "finished"  # it ran to its end (the task may still have failed)
    error = "error"  # an exception of the engine, planner, environment or sandbox ended it
    llm_error = "llm_error"  # the language model gave no answer after its retries

    def __str__(self) -> str:
        return self.value

    @property
    def retried(self) -> bool:
        """Whether a rerun runs the episode again: it did not run to its end."""
        return self is not EpisodeStatus.finished


class EndReason(str, Enum):
    """Why an episode stopped (serialised as its value)."""

    done = "done"  # the task ended
    max_steps = "max_steps"  # the step budget ran out
    policy_end = "policy_end"  # the policy had nothing more
    repeated_failure = "repeated_failure"  # the same failing action came too often
    error = "error"  # an error (status ``error``)
    llm_error = "llm_error"  # a model failure (status ``llm_error``)

    def __str__(self) -> str:
        return self.value


MAX_ERROR_CHARS = 4000


class LearnedUse(BaseModel):
    """How an agent with learned actions used them (learnact at test time): of the steps that ran code, those
    whose code called a learned action; of those, the ones that acted (the environment found at least one
    primitive call inside valid: the call changed the state, whether it then failed or not) and the ones that
    worked (the code ran without an error and the environment found every primitive call inside valid)."""

    model_config = ConfigDict(frozen=True)

    code_steps: int = Field(0, ge=0)
    learned_steps: int = Field(0, ge=0)
    learned_ok: int = Field(0, ge=0)
    learned_acted: int = Field(0, ge=0)  # records written before it existed read as 0

    @property
    def share(self) -> float:
        """The share of code steps that called a learned action (0 without code steps)."""
        return self.learned_steps / self.code_steps if self.code_steps else 0.0

    @property
    def success(self) -> float:
        """The share of those steps that worked (0 without such steps)."""
        return self.learned_ok / self.learned_steps if self.learned_steps else 0.0

    @property
    def acted(self) -> float:
        """The share of those steps that acted (0 without such steps)."""
        return self.learned_acted / self.learned_steps if self.learned_steps else 0.0

    def describe(self) -> str:
        if not self.learned_steps:
            return f"learned actions: none of {self.code_steps} test steps called one"
        return (
            f"learned actions: {self.learned_steps} of {self.code_steps} test steps called one ({self.share:.0%});"
            f" {self.learned_ok} of those worked ({self.success:.0%}), {self.learned_acted} acted"
            " (at least one valid primitive call)"
        )

    def __add__(self, other: LearnedUse) -> LearnedUse:
        return LearnedUse(**{name: getattr(self, name) + getattr(other, name) for name in type(self).model_fields})


class EpisodeRecord(BaseModel):
    """``status`` says whether the episode ran to its end (``finished``: the task may still have failed)
    or was ended by an exception of the engine, planner, environment or sandbox (``error``, with
    ``error`` saying why) or by a language model that gave no answer after its retries (``llm_error``);
    a rerun retries ``error`` and ``llm_error`` episodes, never ``finished`` ones. ``ended`` says why
    it stopped; ``usage`` counts its model calls (model methods). ``seed`` is its repetition (records
    written before seeds existed read as seed 0)."""

    model_config = ConfigDict(frozen=True)

    task: str
    seed: int = 0
    type: str
    env: str
    method: MethodName
    status: EpisodeStatus = EpisodeStatus.finished
    error: str | None = None
    success: bool
    progress: float
    steps: list[StepRecord]
    duration_s: float
    ended: EndReason | None = None
    usage: TokenUsage | None = None
    learned: LearnedUse | None = None  # how the agent used its learned actions; None: it had none


class TypeSummary(BaseModel):
    """Rates over a group of episodes (a task type, a seed)."""

    model_config = ConfigDict(frozen=True)

    episodes: int
    errors: int = 0
    llm_errors: int = 0
    success_rate: float
    progress_rate: float


class SeedSummary(TypeSummary):
    """The rates of the episodes of one seed, and their model calls (model methods)."""

    seed: int
    usage: TokenUsage | None = None


class ResultRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    task: str
    seed: int = 0
    type: str
    status: EpisodeStatus = EpisodeStatus.finished
    error: str | None = None
    success: bool
    progress: float
    steps: int
    ended: EndReason | None = None


def mean_and_std(values: list[float]) -> tuple[float, float]:
    """The mean and the sample standard deviation (n - 1 in the denominator, as results over a few seeds
    are reported) of ``values``; the deviation of one value is 0, and both are 0 for none."""
    if not values:
        return 0.0, 0.0
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _rates(group: list[EpisodeRecord]) -> dict[str, Any]:
    n = len(group)
    return {
        "episodes": n,
        "errors": sum(r.status is EpisodeStatus.error for r in group),
        "llm_errors": sum(r.status is EpisodeStatus.llm_error for r in group),
        "success_rate": sum(r.success for r in group) / n if n else 0.0,
        "progress_rate": sum(r.progress for r in group) / n if n else 0.0,
    }


def _usage(group: list[EpisodeRecord]) -> TokenUsage | None:
    used = [r.usage for r in group if r.usage is not None]
    return sum(used, TokenUsage()) if used else None


def _learned(group: list[EpisodeRecord]) -> LearnedUse | None:
    used = [r.learned for r in group if r.learned is not None]
    return sum(used, LearnedUse()) if used else None


class Summary(BaseModel):
    """Rates over every episode recorded in the run directory (the latest record of each task and seed);
    an episode that ended by an error counts as a failure and in ``errors`` (``llm_errors`` for a model
    that gave no answer); ``usage`` sums the model calls of the episodes (model methods).

    ``success_rate`` and ``progress_rate`` (and ``per_type``) pool the episodes of every seed;
    ``per_seed`` gives each seed's, and ``success_mean`` ± ``success_std`` (``progress_*`` likewise) their
    mean and sample standard deviation over the seeds (:func:`mean_and_std`: 0 with one seed).
    """

    model_config = ConfigDict(frozen=True)

    env: str
    method: MethodName
    episodes: int
    errors: int = 0
    llm_errors: int = 0
    success_rate: float
    progress_rate: float
    success_mean: float = 0.0
    success_std: float = 0.0
    progress_mean: float = 0.0
    progress_std: float = 0.0
    per_type: dict[str, TypeSummary]
    per_seed: list[SeedSummary] = []
    results: list[ResultRow]
    usage: TokenUsage | None = None
    learned: LearnedUse | None = None  # the learned actions' use over every episode; None: the agent had none

    @classmethod
    def of(cls, env: str, method: str, records: list[EpisodeRecord]) -> Summary:
        """The summary of ``records`` (one per episode), seeds in the order they first appear."""
        by_seed: dict[int, list[EpisodeRecord]] = {}
        for record in records:
            by_seed.setdefault(record.seed, []).append(record)
        per_seed = [SeedSummary(seed=seed, usage=_usage(group), **_rates(group)) for seed, group in by_seed.items()]
        types = sorted({r.type for r in records})
        success_mean, success_std = mean_and_std([s.success_rate for s in per_seed])
        progress_mean, progress_std = mean_and_std([s.progress_rate for s in per_seed])
        return cls(
            env=env,
            method=method,
            **_rates(records),
            success_mean=success_mean,
            success_std=success_std,
            progress_mean=progress_mean,
            progress_std=progress_std,
            per_type={t: TypeSummary(**_rates([r for r in records if r.type == t])) for t in types},
            per_seed=per_seed,
            results=[
                ResultRow(
                    task=r.task,
                    seed=r.seed,
                    type=r.type,
                    status=r.status,
                    error=r.error,
                    success=r.success,
                    progress=r.progress,
                    steps=len(r.steps),
                    ended=r.ended,
                )
                for r in records
            ],
            usage=_usage(records),
            learned=_learned(records),
        )
