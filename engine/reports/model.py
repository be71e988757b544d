"""What a report is made of: the table's rows and cells (rates as mean and sample standard deviation over seeds),
the learning curves of LearnAct runs, and the error of runs that cannot be reported."""

from __future__ import annotations

import logging
from enum import Enum
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from learnact.actions.errors import LearnactError
from learnact.actions.library import LearningProgress, RoundRecord
from learnact.actions.text import visible
from learnact.engine.records import LearnedUse, MethodName, TokenUsage
from learnact.envs import NEUTRAL_PROFILE, EnvProfile, env_profile

log = logging.getLogger(__name__)


ALL = "all"  # the column of every task type of an ALFWorld run together
MAX_LABEL_CHARS = 80  # an untrusted name (task type, model) is cut to this in tables and plots


class PlotFormat(str, Enum):
    """The image format of the plots."""

    png = "png"
    svg = "svg"


class ReportError(LearnactError):
    """The runs at ``path`` (None: the runs together) cannot be reported: the message says why, the remedy
    what to do."""

    def __init__(self, path: Path | None, problem: str, remedy: str = "") -> None:
        self.path = path
        super().__init__(problem, remedy)


class Spread(BaseModel):
    """A rate over seeds: the mean of the seeds' rates and their sample standard deviation (0 with one seed)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mean: float
    std: float


class Cell(BaseModel):
    """One method on one domain or task type: the rates over its seeds and what they were computed from.
    ``errors`` counts episodes ended by an error or a model failure (counted as failures, as in the summary)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run: str
    seeds: int
    tasks: int
    episodes: int
    errors: int
    success: Spread
    progress: Spread


class Row(BaseModel):
    """One method (with its model): a cell per column it was run on, and the model calls of its runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: MethodName
    model: str | None
    cells: dict[str, Cell]
    usage: TokenUsage | None
    runs: list[str]
    learned: LearnedUse | None = None  # how its agent used learned actions (learnact); None: it had none

    @property
    def label(self) -> str:
        """``act · gpt-4o-mini``; the expert alone."""
        return label(self.method, self.model)

    @property
    def seeds(self) -> str:
        """The numbers of seeds of its cells: ``3``, or ``1, 3`` when they differ."""
        return ", ".join(str(n) for n in sorted({cell.seeds for cell in self.cells.values()}))


class LearningCurve(BaseModel):
    """The learning rounds of one LearnAct library: each candidate's score and the best kept."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    library: str
    env: str | None
    rounds: list[RoundRecord]
    usage: TokenUsage | None = None  # the learning run's model calls (learner and scoring agent); None: unknown
    learning: LearningProgress | None = None  # where the learning run stood; None: the library does not say


class Report(BaseModel):
    """The table (``rows`` × ``columns``), the learning curves, and what a reader should know (``warnings``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    benchmark: str | None  # the environments' family ("pddl", "alfworld"); None when only learning runs were given
    columns: list[str]
    rows: list[Row]
    learning: list[LearningCurve]
    warnings: list[str]


def family(env: str) -> str:
    return env.split("/", 1)[0]


def profile_of(env: str) -> EnvProfile:
    """The profile of a recorded run's environment; the neutral one for a family no longer installed."""
    try:
        return env_profile(env)
    except LearnactError as exc:
        log.info("reporting %s with neutral defaults: %s", env, exc)
        return NEUTRAL_PROFILE


def benchmark_label(family: str | None) -> str:
    """How the report names the benchmark: its family's profile's name, else the family's."""
    return (profile_of(family).benchmark or family) if family else ""


def label(method: str, model: str | None) -> str:
    return f"{method} · {model}" if model else method


def cut(text: str) -> str:
    text = visible(text)
    return text if len(text) <= MAX_LABEL_CHARS else text[: MAX_LABEL_CHARS - 1] + "…"
