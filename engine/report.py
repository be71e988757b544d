"""The paper's table from run directories: methods × domains (or ALFWorld task types), success and
progress rates as mean ± std over seeds, tokens and cost; as Markdown and CSV, and plotted with matplotlib
(success per method, and the score across the learning rounds of LearnAct runs).

Why a module of its own: a reproduction is judged by this table, so its numbers must come from what the
runs recorded and nothing else. They are recomputed from each run's ``summary.json`` rows (one per task and
seed), with the standard deviation of :func:`learnact.engine.records.mean_and_std` (sample, n - 1; 0 with one
seed), and checked against the rates the summary states, so a hand-edited or half-written summary is refused
rather than reported.

What it must never do: write into a run directory or take its lock (a report may be made while a run goes
on: it reads the summary the run last wrote, never ``episodes.jsonl``, whose torn last line a reader would
have to cut), nor trust what it reads. Every file is validated through the records' models, every number
checked to be finite and in range, and every string from a run (task types, model names) is untrusted: the
CLI shows it through ``visible()``, Markdown escapes it, CSV defuses spreadsheet formulas, plots escape
matplotlib's mathtext.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from collections.abc import Iterable, Sequence
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from learnact.actions.errors import LearnactError
from learnact.actions.files import write_atomic
from learnact.actions.library import RUN_LIBRARY, LearningProgress, Library, LibraryError, RoundRecord
from learnact.actions.text import visible
from learnact.engine.agents import method_names
from learnact.engine.evaluation import EvalConfig, RunSplits
from learnact.engine.learnact_run import SCORING
from learnact.engine.llm import CallLog, Totals
from learnact.engine.records import LearnedUse, MethodName, ModelSettings, ResultRow, Summary, TokenUsage, mean_and_std
from learnact.engine.rundir import CONFIG, EPISODES, SPLITS, SUMMARY, RunDir, RunDirError, RunKind, read_model
from learnact.envs import NEUTRAL_PROFILE, EnvProfile, env_profile

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # matplotlib is imported where a plot is drawn: it costs every command ~1 s otherwise
    from matplotlib.figure import Figure

ALL = "all"  # the column of every task type of an ALFWorld run together
MAX_SUMMARY_BYTES = 50_000_000
MAX_LABEL_CHARS = 80  # an untrusted name (task type, model) is cut to this in tables and plots
RATE_TOLERANCE = 1e-9  # a summary's stated rate and the one recomputed from its rows must agree within it
MARKDOWN = "report.md"
CSV = "report.csv"
SUCCESS_PLOT = "success"
LEARNING_PLOT = "learning"
REWRITE_REMEDY = "run the same learnact eval command again: it rewrites the summary from episodes.jsonl"
RUN_REMEDY = (
    "give the --out folder of a learnact eval run (for the learning rounds: of a learnact learn --method learnact "
    "run, which holds library/)"
)


BaseModelT = TypeVar("BaseModelT", bound=BaseModel)


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
        return _label(self.method, self.model)

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


# --- reading the runs ------------------------------------------------------------------------------------


class _EvalRun(BaseModel):
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


def _rate(rows: Sequence[ResultRow], field: str) -> float:
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
        success, progress = _rate(group, "success"), _rate(group, "progress")
        if not (_close(rates.success_rate, success) and _close(rates.progress_rate, progress)):
            raise refuse(f"states rates for {what} that its results do not give")
    if summary.per_seed:  # summaries of learnact before seeds have none: nothing more to check
        seeds = sorted({row.seed for row in rows})
        for field in ("success", "progress"):
            mean, std = mean_and_std([_rate([r for r in rows if r.seed == s], field) for s in seeds])
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


def _load(paths: Sequence[Path]) -> tuple[list[_EvalRun], list[LearningCurve]]:
    """Every run given, once (the same folder given twice, or a learning run and its library folder, count once).

    :raises ReportError: for a folder that is not a run, a run without a summary, a summary that does not hold
        together, or an unreadable library.
    """
    runs: dict[Path, _EvalRun] = {}
    curves: dict[Path, LearningCurve] = {}
    for given in paths:
        path = Path(given)
        if not path.is_dir():
            what = "does not exist" if not path.exists() else "is not a folder"
            raise ReportError(path, f"the run {path} {what}", RUN_REMEDY)
        curve = _learning_curve(path)
        if curve is not None:
            curves.setdefault(Path(curve.library).resolve(), curve)
        if (path / SUMMARY).is_file():
            if path.resolve() not in runs:
                config = _read_config(path)
                summary = _read_json(path, SUMMARY, Summary, REWRITE_REMEDY)
                _check_summary(path, config, summary)
                splits = _read_json(path, SPLITS, RunSplits, REWRITE_REMEDY) if (path / SPLITS).is_file() else None
                runs[path.resolve()] = _EvalRun(path=path, config=config, summary=summary, splits=splits)
        elif curve is None:
            if (path / CONFIG).is_file():
                raise ReportError(
                    path,
                    f"the run {path} has no {SUMMARY}: it has not finished (it is written when learnact eval ends)",
                    "run the same learnact eval command again to finish it (it resumes)",
                )
            raise ReportError(path, f"{path} is not a run directory (no {CONFIG}, {SUMMARY} nor library)", RUN_REMEDY)
    return list(runs.values()), list(curves.values())


# --- the table ------------------------------------------------------------------------------------------


def _family(env: str) -> str:
    return env.split("/", 1)[0]


def _profile(env: str) -> EnvProfile:
    """The profile of a recorded run's environment; the neutral one for a family no longer installed."""
    try:
        return env_profile(env)
    except LearnactError as exc:
        log.info("reporting %s with neutral defaults: %s", env, exc)
        return NEUTRAL_PROFILE


def _benchmark_label(family: str | None) -> str:
    """How the report names the benchmark: its family's profile's name, else the family's."""
    return (_profile(family).benchmark or family) if family else ""


def _columns_of(run: _EvalRun) -> dict[str, list[ResultRow]]:
    """The run's rows per column: one per task type, and for an ALFWorld run of several types, all of them."""
    by_type: dict[str, list[ResultRow]] = {}
    for row in run.summary.results:
        by_type.setdefault(row.type, []).append(row)
    if _profile(run.summary.env).report_by_type and len(by_type) > 1:
        if ALL in by_type:
            raise ReportError(run.path, f"{run.path / SUMMARY} has a task type named {ALL!r}, which names its total")
        by_type[ALL] = list(run.summary.results)
    return by_type


def _cell(run: _EvalRun, column: str, rows: list[ResultRow], warnings: list[str]) -> Cell:
    by_seed: dict[int, list[ResultRow]] = {}
    for row in rows:
        by_seed.setdefault(row.seed, []).append(row)
    seeds = sorted(by_seed)
    sizes = {seed: len(by_seed[seed]) for seed in seeds}
    if len(set(sizes.values())) > 1:
        counts = ", ".join(f"seed {seed}: {n}" for seed, n in sizes.items())
        warnings.append(f"{run.path} ({column}): the seeds have different numbers of episodes ({counts})")
    success = mean_and_std([_rate(by_seed[seed], "success") for seed in seeds])
    progress = mean_and_std([_rate(by_seed[seed], "progress") for seed in seeds])
    return Cell(
        run=str(run.path),
        seeds=len(seeds),
        tasks=len({row.task for row in rows}),
        episodes=len(rows),
        errors=sum(row.status != "finished" for row in rows),
        success=Spread(mean=success[0], std=success[1]),
        progress=Spread(mean=progress[0], std=progress[1]),
    )


def _missing_episodes(run: _EvalRun) -> int:
    """How many episodes its ``splits.json`` selects (each seed's test tasks) that its summary lacks."""
    if run.splits is None:
        return 0
    selected = {(task, split.seed) for split in run.splits.splits for task in split.test}
    return len(selected - {(row.task, row.seed) for row in run.summary.results})


def _label(method: str, model: str | None) -> str:
    return f"{method} · {model}" if model else method


def _row_key(run: _EvalRun) -> tuple[str, str | None]:
    model = run.config.run.model
    return run.config.run.method, model.model if model is not None else None


def _ordered_columns(found: Iterable[str], order: Sequence[str]) -> list[str]:
    """The task types in the family's ``order`` (ALFWorld's: the paper's), others as first found, the total
    last."""
    found = list(dict.fromkeys(found))
    known = [t for t in order if t in found]
    return [*known, *(c for c in found if c not in known and c != ALL), *([ALL] if ALL in found else [])]


def build_report(paths: Sequence[Path]) -> Report:
    """The report of the runs at ``paths``: evaluation run directories (``learnact eval --out``) make the
    table, learning runs (a folder holding ``library/``, or a library folder) the learning curves. A folder
    given twice counts once.

    :raises ReportError: for no path, a folder that is not a run, a run without ``summary.json``, a summary
        or config that does not hold together (edited by hand), runs of different benchmarks (PDDL and
        ALFWorld), or two runs of the same method and model on the same domain or task type.
    """
    if not paths:
        raise ReportError(None, "no run to report", RUN_REMEDY)
    runs, curves = _load(paths)
    families = sorted({_family(run.summary.env) for run in runs})
    if len(families) > 1:
        examples = {_family(run.summary.env): run.path for run in runs}
        listed = " and ".join(f"{family} ({examples[family]})" for family in families)
        raise ReportError(
            None, f"the runs are of different benchmarks, {listed}", "report each benchmark's runs separately"
        )
    warnings: list[str] = []
    cells: dict[tuple[str, str | None], dict[str, Cell]] = {}
    models: dict[tuple[str, str | None], set[ModelSettings]] = {}
    row_runs: dict[tuple[str, str | None], list[_EvalRun]] = {}
    found: list[str] = []
    for run in runs:
        key = _row_key(run)
        row_cells = cells.setdefault(key, {})
        for column, rows in sorted(_columns_of(run).items()):
            if column in row_cells:
                raise ReportError(
                    None,
                    f"the runs {row_cells[column].run} and {run.path} both give {_label(*key)} on {column}",
                    "give one run per method and domain (shards of one run share its folder: run them with the "
                    "same learnact eval --out)",
                )
            row_cells[column] = _cell(run, column, rows, warnings)
            found.append(column)
        row_runs.setdefault(key, []).append(run)
        if run.config.run.model is not None:
            models.setdefault(key, set()).add(run.config.run.model)
        missing = _missing_episodes(run)
        if missing:
            warnings.append(
                f"{run.path}: {missing} selected episode(s) are not in its summary (the run was interrupted?); "
                "run its learnact eval command again to finish them"
            )
        failed = run.summary.errors + run.summary.llm_errors
        if failed:
            warnings.append(
                f"{run.path}: {failed} episode(s) ended by an error or a model failure and count as failures; "
                "run its learnact eval command again to retry them"
            )
    for key, settings in models.items():
        if len(settings) > 1:
            warnings.append(
                f"{_label(*key)}: its runs used different model settings (temperature, max tokens or server); "
                "the row mixes them"
            )
    columns = _ordered_columns(found, _profile(families[0]).type_order if families else ())
    order = method_names()
    rows = []
    for key in sorted(cells, key=lambda k: (order.index(k[0]) if k[0] in order else len(order), k[0], k[1] or "")):
        usages = [run.summary.usage for run in row_runs[key] if run.summary.usage is not None]
        learned = [run.summary.learned for run in row_runs[key] if run.summary.learned is not None]
        rows.append(
            Row(
                method=key[0],
                model=key[1],
                cells=cells[key],
                usage=sum(usages, TokenUsage()) if usages else None,
                runs=[str(run.path) for run in row_runs[key]],
                learned=sum(learned, LearnedUse()) if learned else None,
            )
        )
    for column in columns:
        task_sets = {frozenset(r.task for r in _rows_of(row_runs[k], column)) for k in cells if column in cells[k]}
        if len(task_sets) > 1:
            warnings.append(f"{column}: the methods were run on different tasks (compare with care)")
    for curve in curves:
        if curve.learning is not None and not curve.learning.finished:
            warnings.append(f"{curve.library}: {curve.learning.describe()}; its selected set is the best so far")
        elif not curve.rounds and curve.learning is not None:
            warnings.append(
                f"{curve.library}: learning finished without a scored round: no candidate action set passed"
                " validation, so no action was kept (see `learnact audit` for why each was dropped)"
            )
        elif not curve.rounds:
            warnings.append(f"{curve.library}: no learning round recorded yet")
    return Report(
        benchmark=families[0] if families else None, columns=columns, rows=rows, learning=curves, warnings=warnings
    )


def _rows_of(runs: list[_EvalRun], column: str) -> list[ResultRow]:
    return [row for run in runs for row in _columns_of(run).get(column, [])]


# --- Markdown and CSV ----------------------------------------------------------------------------------------


def _cut(text: str) -> str:
    text = visible(text)
    return text if len(text) <= MAX_LABEL_CHARS else text[: MAX_LABEL_CHARS - 1] + "…"


def percent(spread: Spread, seeds: int) -> str:
    """``40.0 ± 5.0`` (percent); the mean alone for one seed, whose deviation says nothing."""
    mean = f"{100 * spread.mean:.1f}"
    return mean if seeds == 1 else f"{mean} ± {100 * spread.std:.1f}"


def cell_text(cell: Cell | None, between: str = " / ") -> str:
    """``success / progress`` of a cell (``between`` them), or ``–`` for a method not run on that column."""
    if cell is None:
        return "–"
    return f"{percent(cell.success, cell.seeds)}{between}{percent(cell.progress, cell.seeds)}"


def learned_text(learned: LearnedUse | None) -> str:
    """The learned actions' use in a table cell: the share of test steps calling one, and how many worked."""
    if learned is None:
        return "–"
    return f"{learned.share:.0%} of steps, {learned.success:.0%} worked"


def tokens_text(usage: TokenUsage | None) -> str:
    return "–" if usage is None else f"{usage.prompt_tokens + usage.completion_tokens:,}"


def cost_text(usage: TokenUsage | None) -> str:
    return "–" if usage is None else f"{usage.cost_usd:.4f}"


def learning_cost_text(usage: TokenUsage) -> str:
    """What learning cost: ``learning: 12 model calls, 3,400 tokens, est. cost 0.0120 USD``."""
    tokens = usage.prompt_tokens + usage.completion_tokens
    return f"learning: {usage.calls} model calls, {tokens:,} tokens, est. cost {usage.cost_usd:.4f} USD"


def caption(report: Report) -> str:
    benchmark = _benchmark_label(report.benchmark)
    return (
        f"{benchmark}: success rate / progress rate in %, mean ± sample standard deviation over seeds "
        "(the mean alone for one seed); the tokens of the runs' model calls and their estimated cost (USD; calls to a "
        "model of unknown price count 0)"
    )


def _md(text: str) -> str:
    """Untrusted text as Markdown that shows it literally: no HTML, link, code, emphasis nor table cell break."""
    text = _cut(text).replace("\n", " ")
    return "".join("\\" + ch if ch in "\\`*_[]<>|&#!~" else ch for ch in text)


def render_markdown(report: Report, images: Sequence[str] = ()) -> str:
    """The report as Markdown: the table, the learning rounds, the runs and the warnings; ``images`` are
    plot files to show (relative paths)."""
    lines = ["# learnact report", ""]
    if report.rows:
        lines += [caption(report) + ".", ""]
        header = ["method", "model", "seeds", *(_md(c) for c in report.columns), "learned actions", "tokens"]
        header.append("cost (USD)")
        lines.append("| " + " | ".join(header) + " |")
        right = ["---:"] * (len(report.columns) + 3)
        lines.append("|" + "|".join(["---", "---", "---:", *right]) + "|")
        for row in report.rows:
            cells = [cell_text(row.cells.get(c)) for c in report.columns]
            model = _md(row.model) if row.model else "–"
            values = [row.method, model, row.seeds, *cells, learned_text(row.learned), tokens_text(row.usage)]
            values.append(cost_text(row.usage))
            lines.append("| " + " | ".join(values) + " |")
        lines.append("")
    if report.learning:
        lines += ["## Score across learning rounds", ""]
        lines.append("| library | round | best score | candidates' scores | rolled back |")
        lines.append("|---|---:|---:|---|---|")
        for curve in report.learning:
            for record in curve.rounds:
                scores = ", ".join(f"{c.score:.3f}" for c in record.candidates)
                rolled = "yes" if record.rolled_back else ""
                lines.append(
                    f"| {_md(curve.library)} | {record.round} | {record.best_score:.3f} | {scores} | {rolled} |"
                )
        lines.append("")
        costs = [
            f"- {_md(curve.library)}: {learning_cost_text(curve.usage)}" for curve in report.learning if curve.usage
        ]
        lines += [*costs, ""] if costs else []
    lines += [f"![{Path(image).stem}]({image})" for image in images]
    lines += [""] if images else []
    runs = [(run, row.label) for row in report.rows for run in row.runs]
    if runs:
        lines += ["Runs:", ""] + [f"- {_md(run)}: {_md(label)}" for run, label in runs] + [""]
    if report.warnings:
        lines += ["Warnings:", ""] + [f"- {_md(warning)}" for warning in report.warnings] + [""]
    return "\n".join(lines)


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_text(text: str) -> str:
    """Untrusted text that a spreadsheet shows as text, never runs as a formula (OWASP's CSV injection), and
    that a terminal printing the file shows literally."""
    text = visible(text)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def render_csv(report: Report) -> str:
    """The table as CSV, one row per method: per column its success and progress mean and std (fractions,
    full precision), seeds and episodes, empty where the method was not run; then its model calls."""
    per_column = ("success_mean", "success_std", "progress_mean", "progress_std", "seeds", "episodes")
    header = ["method", "model", *(f"{c}_{field}" for c in report.columns for field in per_column)]
    header += ["learned_steps", "learned_step_share", "learned_worked_share"]
    header += ["model_calls", "prompt_tokens", "completion_tokens", "cost_usd"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([_csv_text(name) for name in header])
    for row in report.rows:
        values: list[object] = [row.method, _csv_text(row.model or "")]
        for column in report.columns:
            cell = row.cells.get(column)
            if cell is None:
                values += [""] * len(per_column)
            else:
                values += [cell.success.mean, cell.success.std, cell.progress.mean, cell.progress.std]
                values += [cell.seeds, cell.episodes]
        learned = row.learned
        values += ["", "", ""] if learned is None else [learned.learned_steps, learned.share, learned.success]
        usage = row.usage
        if usage is None:
            values += ["", "", "", ""]
        else:
            values += [usage.calls, usage.prompt_tokens, usage.completion_tokens, usage.cost_usd]
        writer.writerow(values)
    return out.getvalue()


# --- plots --------------------------------------------------------------------------------------------------


def _plot_text(text: str) -> str:
    """Untrusted text as a matplotlib label: shown literally (``$`` would start mathtext), bounded."""
    return _cut(text).replace("$", r"\$")


def _image(figure: Figure, fmt: PlotFormat) -> bytes:
    """The figure as PNG or SVG bytes; SVG keeps its text as <text> elements (searchable, testable) and
    carries no date, so the same report gives the same file."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    out = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "learnact"}):
        metadata = {"Date": None} if fmt is PlotFormat.svg else {}
        figure.savefig(out, format=fmt.value, dpi=150, bbox_inches="tight", metadata=metadata)
    return out.getvalue()


def plot_success(report: Report, fmt: PlotFormat = PlotFormat.png) -> bytes | None:
    """Success rate per method as bars grouped by column, with the standard deviation over seeds as error
    bars (drawn within 0-100 %, where a rate lies); None without a table."""
    if not report.rows:
        return None
    from matplotlib.figure import Figure

    columns, rows = report.columns, report.rows
    figure = Figure(figsize=(min(40.0, 2.5 + len(columns) * (0.6 + 0.4 * len(rows))), 4.5))
    axes = figure.add_subplot()
    width = 0.8 / len(rows)
    for index, row in enumerate(rows):
        present = [(i, row.cells[c]) for i, c in enumerate(columns) if c in row.cells]
        axes.bar(
            [i - 0.4 + width * (index + 0.5) for i, _ in present],
            [100 * cell.success.mean for _, cell in present],
            width,
            yerr=[
                [100 * min(cell.success.std, cell.success.mean) for _, cell in present],
                [100 * min(cell.success.std, 1.0 - cell.success.mean) for _, cell in present],
            ],
            capsize=3,
            label=_plot_text(row.label),
        )
    axes.set_xticks(range(len(columns)), [_plot_text(c) for c in columns])
    axes.set_ylim(0, 105)
    axes.set_ylabel("success rate (%)")
    axes.set_title(f"Success per method, {_benchmark_label(report.benchmark)}")
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    return _image(figure, fmt)


def plot_learning(report: Report, fmt: PlotFormat = PlotFormat.png) -> bytes | None:
    """The score across learning rounds, one panel per library: each candidate's score as a dot, the best
    kept as a line, rolled-back rounds marked; None without a learning round."""
    curves = [curve for curve in report.learning if curve.rounds]
    if not curves:
        return None
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.5 * len(curves) + 1.5, 4.0))
    for index, curve in enumerate(curves, start=1):
        axes = figure.add_subplot(1, len(curves), index)
        xs = [record.round for record in curve.rounds]
        candidates = [(r.round, c.score) for r in curve.rounds for c in r.candidates]
        axes.scatter([x for x, _ in candidates], [y for _, y in candidates], alpha=0.5, label="candidate")
        axes.plot(xs, [record.best_score for record in curve.rounds], marker="o", label="best")
        rolled = [record for record in curve.rounds if record.rolled_back]
        if rolled:
            rounds, scores = [r.round for r in rolled], [r.best_score for r in rolled]
            axes.scatter(rounds, scores, marker="x", s=80, color="red", label="rolled back", zorder=3)
        axes.set_xticks(xs)
        axes.set_xlabel("learning round")
        axes.set_ylabel("score")
        name = Path(curve.library).parent.name if Path(curve.library).name == "library" else Path(curve.library).name
        axes.set_title(_plot_text(f"{name} ({curve.env})" if curve.env else name), fontsize="medium")
        axes.legend(fontsize="small")
    figure.suptitle("Score across learning rounds")
    return _image(figure, fmt)


# --- writing ------------------------------------------------------------------------------------------------


def write_file(path: Path, data: str | bytes) -> None:
    """Replace ``path`` by ``data`` atomically.

    :raises ReportError: when it cannot be written (the path is a folder, the disk is full, ...).
    """
    if path.is_dir():
        raise ReportError(path, f"{path} is a folder", "give a file name")
    try:
        write_atomic(path, data)
    except OSError as exc:
        raise ReportError(path, f"cannot write {path}: {exc.strerror or exc}") from None


def write_report(report: Report, out: Path, fmt: PlotFormat = PlotFormat.png) -> list[Path]:
    """Write ``report.md`` (showing the plots), ``report.csv`` and the plots (``success.<fmt>``, and
    ``learning.<fmt>`` with learning rounds) into the folder ``out``; the paths written.

    :raises ReportError: when ``out`` is a file or a file cannot be written.
    """
    if out.exists() and not out.is_dir():
        raise ReportError(out, f"{out} is a file", "give a folder as {out}")
    written: dict[str, bytes | str] = {}
    for stem, plot in ((SUCCESS_PLOT, plot_success), (LEARNING_PLOT, plot_learning)):
        image = plot(report, fmt)
        if image is not None:
            written[f"{stem}.{fmt.value}"] = image
    written = {MARKDOWN: render_markdown(report, images=list(written)), CSV: render_csv(report), **written}
    paths = []
    for name, data in written.items():
        write_file(out / name, data)
        paths.append(out / name)
    return paths
