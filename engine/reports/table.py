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

from collections.abc import Iterable, Sequence
from pathlib import Path

from learnact.engine.agents import method_names
from learnact.engine.records import EpisodeStatus, LearnedUse, ModelSettings, ResultRow, TokenUsage, mean_and_std
from learnact.engine.reports.model import (
    ALL,
    Cell,
    LearningCurve,
    Report,
    ReportError,
    Row,
    Spread,
    family,
    label,
    profile_of,
)
from learnact.engine.reports.runs import RUN_REMEDY, EvalRun, load_runs, rate
from learnact.engine.rundir import SUMMARY

# --- the table ------------------------------------------------------------------------------------------


def _columns_of(run: EvalRun) -> dict[str, list[ResultRow]]:
    """The run's rows per column: one per task type, and for an ALFWorld run of several types, all of them."""
    by_type: dict[str, list[ResultRow]] = {}
    for row in run.summary.results:
        by_type.setdefault(row.type, []).append(row)
    if profile_of(run.summary.env).report_by_type and len(by_type) > 1:
        if ALL in by_type:
            raise ReportError(run.path, f"{run.path / SUMMARY} has a task type named {ALL!r}, which names its total")
        by_type[ALL] = list(run.summary.results)
    return by_type


def _cell(run: EvalRun, column: str, rows: list[ResultRow], warnings: list[str]) -> Cell:
    by_seed: dict[int, list[ResultRow]] = {}
    for row in rows:
        by_seed.setdefault(row.seed, []).append(row)
    seeds = sorted(by_seed)
    sizes = {seed: len(by_seed[seed]) for seed in seeds}
    if len(set(sizes.values())) > 1:
        counts = ", ".join(f"seed {seed}: {n}" for seed, n in sizes.items())
        warnings.append(f"{run.path} ({column}): the seeds have different numbers of episodes ({counts})")
    success = mean_and_std([rate(by_seed[seed], "success") for seed in seeds])
    progress = mean_and_std([rate(by_seed[seed], "progress") for seed in seeds])
    return Cell(
        run=str(run.path),
        seeds=len(seeds),
        tasks=len({row.task for row in rows}),
        episodes=len(rows),
        errors=sum(row.status is not EpisodeStatus.finished for row in rows),
        success=Spread(mean=success[0], std=success[1]),
        progress=Spread(mean=progress[0], std=progress[1]),
    )


def _missing_episodes(run: EvalRun) -> int:
    """How many episodes its ``splits.json`` selects (each seed's test tasks) that its summary lacks."""
    if run.splits is None:
        return 0
    selected = {(task, split.seed) for split in run.splits.splits for task in split.test}
    return len(selected - {(row.task, row.seed) for row in run.summary.results})


def _row_key(run: EvalRun) -> tuple[str, str | None]:
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
    runs, curves = load_runs(paths)
    families = sorted({family(run.summary.env) for run in runs})
    if len(families) > 1:
        examples = {family(run.summary.env): run.path for run in runs}
        listed = " and ".join(f"{family} ({examples[family]})" for family in families)
        raise ReportError(
            None, f"the runs are of different benchmarks, {listed}", "report each benchmark's runs separately"
        )
    warnings: list[str] = []
    table = _Table()
    for run in runs:
        table.add(run, warnings)
        warnings += _run_warnings(run)
    columns = _ordered_columns(table.found, profile_of(families[0]).type_order if families else ())
    rows = table.rows(warnings)
    for column in columns:
        tasks = {
            frozenset(r.task for r in _rows_of(table.runs[k], column)) for k in table.cells if column in table.cells[k]
        }
        if len(tasks) > 1:
            warnings.append(f"{column}: the methods were run on different tasks (compare with care)")
    warnings += [warning for curve in curves for warning in _curve_warnings(curve)]
    return Report(
        benchmark=families[0] if families else None, columns=columns, rows=rows, learning=curves, warnings=warnings
    )


RowKey = tuple[str, str | None]  # a row: the method and its model


class _Table:
    """The cells of the runs by row and column, the runs of each row and the model settings they used."""

    def __init__(self) -> None:
        self.cells: dict[RowKey, dict[str, Cell]] = {}
        self.models: dict[RowKey, set[ModelSettings]] = {}
        self.runs: dict[RowKey, list[EvalRun]] = {}
        self.found: list[str] = []

    def add(self, run: EvalRun, warnings: list[str]) -> None:
        """The cells of ``run`` in its row.

        :raises ReportError: when another run already gave its row a cell in one of its columns.
        """
        key = _row_key(run)
        row_cells = self.cells.setdefault(key, {})
        for column, rows in sorted(_columns_of(run).items()):
            if column in row_cells:
                raise ReportError(
                    None,
                    f"the runs {row_cells[column].run} and {run.path} both give {label(*key)} on {column}",
                    "give one run per method and domain (shards of one run share its folder: run them with the "
                    "same learnact eval --out)",
                )
            row_cells[column] = _cell(run, column, rows, warnings)
            self.found.append(column)
        self.runs.setdefault(key, []).append(run)
        if run.config.run.model is not None:
            self.models.setdefault(key, set()).add(run.config.run.model)

    def rows(self, warnings: list[str]) -> list[Row]:
        """The rows in the methods' registered order, each with its runs' token usage and learned-action use."""
        for key, settings in self.models.items():
            if len(settings) > 1:
                warnings.append(
                    f"{label(*key)}: its runs used different model settings (temperature, max tokens or server); "
                    "the row mixes them"
                )
        order = method_names()
        rows = []
        for key in sorted(
            self.cells, key=lambda k: (order.index(k[0]) if k[0] in order else len(order), k[0], k[1] or "")
        ):
            usages = [run.summary.usage for run in self.runs[key] if run.summary.usage is not None]
            learned = [run.summary.learned for run in self.runs[key] if run.summary.learned is not None]
            rows.append(
                Row(
                    method=key[0],
                    model=key[1],
                    cells=self.cells[key],
                    usage=sum(usages, TokenUsage()) if usages else None,
                    runs=[str(run.path) for run in self.runs[key]],
                    learned=sum(learned, LearnedUse()) if learned else None,
                )
            )
        return rows


def _run_warnings(run: EvalRun) -> list[str]:
    """What a reader of ``run``'s cells should know: episodes missing from its summary, episodes ended by an error."""
    warnings = []
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
    return warnings


def _curve_warnings(curve: LearningCurve) -> list[str]:
    """What a reader of a learning curve should know: learning not finished, or no round scored."""
    if curve.learning is not None and not curve.learning.finished:
        return [f"{curve.library}: {curve.learning.describe()}; its selected set is the best so far"]
    if not curve.rounds and curve.learning is not None:
        return [
            f"{curve.library}: learning finished without a scored round: no candidate action set passed"
            " validation, so no action was kept (see `learnact audit` for why each was dropped)"
        ]
    if not curve.rounds:
        return [f"{curve.library}: no learning round recorded yet"]
    return []


def _rows_of(runs: list[EvalRun], column: str) -> list[ResultRow]:
    return [row for run in runs for row in _columns_of(run).get(column, [])]
