"""Reading the runs a report is made from, trusting none of it: each run's ``summary.json`` (rows checked against
the rates it states, so a hand-edited or half-written summary is refused), its config and splits, and the
learning rounds and token usage of LearnAct libraries. A report never writes into a run directory nor takes its
lock: it reads the summary the run last wrote, never ``episodes.jsonl``."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from learnact.actions.library import RUN_LIBRARY, Library, LibraryError
from learnact.engine.llm import CallLog, Totals
from learnact.engine.records import ResultRow, Summary, TokenUsage, mean_and_std
from learnact.engine.reports.model import MAX_LABEL_CHARS, LearningCurve, ReportError
from learnact.engine.rundir import CONFIG, EPISODES, SPLITS, SUMMARY, RunDir, RunDirError, RunKind, read_model
from learnact.engine.runs.evaluation import EvalConfig, RunSplits
from learnact.engine.runs.learnact_run import SCORING, learned_by_type

MAX_SUMMARY_BYTES = 50_000_000
RATE_TOLERANCE = 1e-9  # a summary's stated rate and the one recomputed from its rows must agree within it
REWRITE_REMEDY = "run the same learnact eval command again: it rewrites the summary from episodes.jsonl"
RUN_REMEDY = (
    "give the --out folder of a learnact eval run (for the learning rounds: of a learnact learn --method learnact "
    "run, which holds library/)"
)
BaseModelT = TypeVar("BaseModelT", bound=BaseModel)


# --- reading the runs ------------------------------------------------------------------------------------


class EvalRun(BaseModel):
    model_config = ConfigDict(frozen=True)

    path: Path
    config: EvalConfig
    summary: Summary
    splits: RunSplits | None  # None for a run of learnact before seeds


def _read_json(path: Path, name: str, model: type[BaseModelT], remedy: str) -> BaseModelT:
    """``path / name`` validated as ``model``, refused when too large, unreadable or invalid."""
    file = path / name
    try:
        found = read_model(file, model, MAX_SUMMARY_BYTES, root=path, what=f"a run's {name}", remedy=remedy)
    except RunDirError as exc:
        raise ReportError(path, exc.message, exc.remedy) from None
    if found is None:
        raise ReportError(path, f"cannot read {file}: it does not exist", remedy)
    return found


def _read_config(path: Path) -> EvalConfig:
    """The evaluation's config in the run folder ``path``.

    :raises ReportError: for a folder of another kind or format, or a config that is missing or not one.
    """
    try:
        kind = RunDir(path).found_kind()
    except RunDirError as exc:
        raise ReportError(path, exc.message, exc.remedy) from None
    if kind not in (None, RunKind.evaluation):
        raise ReportError(path, f"{path} holds {kind.describe()}, not an evaluation run", RUN_REMEDY)
    if not os.path.lexists(path / CONFIG):
        raise ReportError(path, f"{path} has {SUMMARY} but no {CONFIG}: it is not a run directory", RUN_REMEDY)
    return _read_json(path, CONFIG, EvalConfig, RUN_REMEDY)


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else error["msg"]


def rate(rows: Sequence[ResultRow], field: str) -> float:
    return sum(float(getattr(row, field)) for row in rows) / len(rows) if rows else 0.0


def _check_summary(path: Path, config: EvalConfig, summary: Summary) -> None:
    """Refuse a summary that is not what learnact eval wrote for this config: the numbers of the report are
    recomputed from its rows, so the rows must be sound and agree with every rate it states."""

    def refuse(problem: str) -> ReportError:
        return ReportError(
            path,
            f"{path / SUMMARY} {problem}; it was not written by learnact eval as it stands (edited by hand?)",
            REWRITE_REMEDY,
        )

    if summary.method != config.run.method or summary.env != config.run.env.name:
        run = config.run
        raise refuse(f"is of {summary.env} · {summary.method} but {CONFIG} of {run.env.name} · {run.method}")
    rows = summary.results
    if not rows:
        raise refuse("has no episode")
    seen: set[tuple[str, int]] = set()
    for row in rows:
        if not (0.0 <= row.progress <= 1.0) or row.seed < 0 or not row.type or len(row.type) > MAX_LABEL_CHARS:
            raise refuse(f"has an impossible result for task {row.task!r} (type, seed or progress)")
        if (row.task, row.seed) in seen:
            raise refuse(f"lists task {row.task!r} seed {row.seed} twice")
        seen.add((row.task, row.seed))
    if summary.episodes != len(rows):
        raise refuse(f"counts {summary.episodes} episodes but lists {len(rows)}")
    stated = [("all episodes", summary, rows)]
    stated += [(f"type {t}", rates, [r for r in rows if r.type == t]) for t, rates in summary.per_type.items()]
    stated += [(f"seed {rates.seed}", rates, [r for r in rows if r.seed == rates.seed]) for rates in summary.per_seed]
    if set(summary.per_type) != {row.type for row in rows}:
        raise refuse("lists other task types than its results")
    if summary.per_seed and {s.seed for s in summary.per_seed} != {row.seed for row in rows}:
        raise refuse("lists other seeds than its results")
    for what, rates, group in stated:
        success, progress = rate(group, "success"), rate(group, "progress")
        if not (_close(rates.success_rate, success) and _close(rates.progress_rate, progress)):
            raise refuse(f"states rates for {what} that its results do not give")
    if summary.per_seed:  # summaries of learnact before seeds have none: nothing more to check
        seeds = sorted({row.seed for row in rows})
        for field in ("success", "progress"):
            mean, std = mean_and_std([rate([r for r in rows if r.seed == s], field) for s in seeds])
            if not (_close(getattr(summary, f"{field}_mean"), mean) and _close(getattr(summary, f"{field}_std"), std)):
                raise refuse(f"states a {field} mean ± std over seeds that its results do not give")
    usage = summary.usage
    if usage is not None and (
        min(usage.calls, usage.cached_calls, usage.failed_calls, usage.prompt_tokens, usage.completion_tokens) < 0
        or not (math.isfinite(usage.cost_usd) and usage.cost_usd >= 0)
    ):
        raise refuse("has negative or non-finite token counts or cost")


def _close(stated: float, computed: float) -> bool:
    return math.isfinite(stated) and abs(stated - computed) <= RATE_TOLERANCE


def _learning_curve(path: Path) -> LearningCurve | None:
    """The learning rounds of the library of a learning run folder (or of a library folder itself); None when
    ``path`` holds no library."""
    if Library.found_at(path) is None:
        return None
    try:
        library = Library.open_existing(path)
        rounds, env, learning = library.rounds(), library.env(), library.learning()
    except LibraryError as exc:
        raise ReportError(path, exc.message, exc.remedy or RUN_REMEDY) from None
    for record in rounds:
        scores = [record.best_score, *(c.score for c in record.candidates)]
        if not all(math.isfinite(score) for score in scores):
            raise ReportError(path, f"round {record.round} of the library {library.path} has a non-finite score")
    usage = _learning_usage(library.path)
    return LearningCurve(library=str(library.path), env=env, rounds=rounds, usage=usage, learning=learning)


def _learning_usage(library: Path) -> TokenUsage | None:
    """The model calls of the learning run that holds ``library``: the learner's (the run's ``calls.jsonl``)
    and the scoring agent's, counted from the recorded episodes of each scoring run under ``score/`` (so the
    calls of an episode that a kill dropped, and a resume ran again, are not counted twice); None for a
    library outside a run.

    :raises ReportError: when a call log or an episode log cannot be read or holds a line that is not a record.
    """
    run = library.parent
    try:
        if library.name != RUN_LIBRARY or RunDir(run).found_kind() is not RunKind.learnact:
            return None
    except RunDirError:  # not a run folder this learnact reads: the library alone
        return None
    try:
        totals = Totals()
        for record in CallLog(run).read():
            totals.add(record)
        usage = TokenUsage(**totals.model_dump(include=set(TokenUsage.model_fields)))
        for episodes in sorted((run / SCORING).rglob(EPISODES)):
            for episode in RunDir(episodes.parent).finished():
                usage += episode.usage or TokenUsage()
    except RunDirError as exc:
        raise ReportError(run, exc.message, exc.remedy) from None
    return usage


def load_runs(paths: Sequence[Path]) -> tuple[list[EvalRun], list[LearningCurve]]:
    """Every run given, once (the same folder given twice, or a learning run and its library folder, count once).

    :raises ReportError: for a folder that is not a run, a run without a summary, a summary that does not hold
        together, or an unreadable library.
    """
    runs: dict[Path, EvalRun] = {}
    curves: dict[Path, LearningCurve] = {}
    for given in paths:
        path = Path(given)
        if not path.is_dir():
            what = "does not exist" if not path.exists() else "is not a folder"
            raise ReportError(path, f"the run {path} {what}", RUN_REMEDY)
        # a learning run that learned by task type holds one library per type
        found = [_learning_curve(folder) for folder in [path, *(learned_by_type(path) or {}).values()]]
        for curve in found:
            if curve is not None:
                curves.setdefault(Path(curve.library).resolve(), curve)
        curve = next((c for c in found if c is not None), None)
        if (path / SUMMARY).is_file():
            if path.resolve() not in runs:
                config = _read_config(path)
                summary = _read_json(path, SUMMARY, Summary, REWRITE_REMEDY)
                _check_summary(path, config, summary)
                splits = _read_json(path, SPLITS, RunSplits, REWRITE_REMEDY) if (path / SPLITS).is_file() else None
                runs[path.resolve()] = EvalRun(path=path, config=config, summary=summary, splits=splits)
        elif curve is None:
            if (path / CONFIG).is_file():
                raise ReportError(
                    path,
                    f"the run {path} has no {SUMMARY}: it has not finished (it is written when learnact eval ends)",
                    "run the same learnact eval command again to finish it (it resumes)",
                )
            raise ReportError(path, f"{path} is not a run directory (no {CONFIG}, {SUMMARY} nor library)", RUN_REMEDY)
    return list(runs.values()), list(curves.values())
