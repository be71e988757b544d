"""Records of a run: what one episode did, step by step, and the summary of many."""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from learnact.envs import EnvSpec
from learnact.sandbox import ExecutionResult, SandboxConfig


class Method(str, Enum):
    """How an episode's actions are chosen (compares equal to, prints and serialises as its value)."""

    expert = "expert"  # the environment's expert (a planner, ALFWorld's handcoded expert), as code

    def __str__(self) -> str:
        return self.value


class RunSettings(BaseModel):
    """What makes a run, shared by all its episodes: the environment, the method, the step budget and
    the sandbox. It is the run's identity: a run directory resumes only a run whose settings are equal
    as a whole. The task selection and the number of workers are not part of it (shards over other
    tasks add their episodes to the same directory).

    :raises pydantic.ValidationError: for an unknown field or a value out of range (it names the field).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: EnvSpec
    method: Method = Method.expert
    max_steps: int = Field(100, gt=0, description="steps per episode")
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)

    def differences(self, other: RunSettings) -> list[str]:
        """The names of the settings in which ``other`` differs, in field order."""
        return [name for name in type(self).model_fields if getattr(self, name) != getattr(other, name)]


class EpisodeSpec(BaseModel):
    """A self-contained unit of work: everything needed to run one episode anywhere."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run: RunSettings
    task: str


class StepRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    index: int
    code: str
    result: ExecutionResult
    observation: str
    duration_s: float


EpisodeStatus = Literal["finished", "error"]
MAX_ERROR_CHARS = 4000


class EpisodeRecord(BaseModel):
    """``status`` says whether the episode ran to its end (``finished``: the task may still have failed)
    or was ended by an exception of the engine, planner, environment or sandbox (``error``, with
    ``error`` saying why); a rerun retries ``error`` episodes, never ``finished`` ones."""

    model_config = ConfigDict(frozen=True)

    task: str
    type: str
    env: str
    method: Method
    status: EpisodeStatus = "finished"
    error: str | None = None
    success: bool
    progress: float
    steps: list[StepRecord]
    duration_s: float


class TypeSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    episodes: int
    errors: int = 0
    success_rate: float
    progress_rate: float


class ResultRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    task: str
    type: str
    status: EpisodeStatus = "finished"
    error: str | None = None
    success: bool
    progress: float
    steps: int


class Summary(BaseModel):
    """Rates over every episode recorded in the run directory (the latest record of each task); an
    episode that ended by an error counts as a failure and in ``errors``."""

    model_config = ConfigDict(frozen=True)

    env: str
    method: Method
    episodes: int
    errors: int = 0
    success_rate: float
    progress_rate: float
    per_type: dict[str, TypeSummary]
    results: list[ResultRow]

    @classmethod
    def of(cls, env: str, method: Method, records: list[EpisodeRecord]) -> Summary:
        def rates(group: list[EpisodeRecord]) -> TypeSummary:
            n = len(group)
            return TypeSummary(
                episodes=n,
                errors=sum(r.status == "error" for r in group),
                success_rate=sum(r.success for r in group) / n if n else 0.0,
                progress_rate=sum(r.progress for r in group) / n if n else 0.0,
            )

        overall = rates(records)
        types = sorted({r.type for r in records})
        return cls(
            env=env,
            method=method,
            episodes=overall.episodes,
            errors=overall.errors,
            success_rate=overall.success_rate,
            progress_rate=overall.progress_rate,
            per_type={t: rates([r for r in records if r.type == t]) for t in types},
            results=[
                ResultRow(
                    task=r.task,
                    type=r.type,
                    status=r.status,
                    error=r.error,
                    success=r.success,
                    progress=r.progress,
                    steps=len(r.steps),
                )
                for r in records
            ],
        )
