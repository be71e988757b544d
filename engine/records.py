"""Records of a run: what one episode did, step by step, and the summary of many."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from learnact.envs.registry import EnvSpec
from learnact.sandbox.config import SandboxConfig
from learnact.sandbox.result import ExecutionResult

Method = Literal["expert"]


class EpisodeSpec(BaseModel):
    """A self-contained unit of work: everything needed to run one episode anywhere."""

    env: EnvSpec
    task: str
    method: Method = "expert"
    max_steps: int = Field(gt=0)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)


class StepRecord(BaseModel):
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

    task: str
    type: str
    env: str
    method: str
    status: EpisodeStatus = "finished"
    error: str | None = None
    success: bool
    progress: float
    steps: list[StepRecord]
    duration_s: float


class TypeSummary(BaseModel):
    episodes: int
    errors: int = 0
    success_rate: float
    progress_rate: float


class ResultRow(BaseModel):
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

    env: str
    method: str
    episodes: int
    errors: int = 0
    success_rate: float
    progress_rate: float
    per_type: dict[str, TypeSummary]
    results: list[ResultRow]

    @classmethod
    def of(cls, env: str, method: str, records: list[EpisodeRecord]) -> Summary:
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
