"""The report as text: Markdown (untrusted strings escaped) and CSV (spreadsheet formulas defused)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from learnact.actions.text import visible
from learnact.engine.records import LearnedUse, TokenUsage
from learnact.engine.reports.model import Cell, Report, Spread, benchmark_label, cut

# --- Markdown and CSV ----------------------------------------------------------------------------------------


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
    """The learned actions' use in a table cell: the share of test steps calling one, and how many of those
    worked and acted."""
    if learned is None:
        return "–"
    return f"{learned.share:.0%} of steps, {learned.success:.0%} worked, {learned.acted:.0%} acted"


def tokens_text(usage: TokenUsage | None) -> str:
    return "–" if usage is None else f"{usage.prompt_tokens + usage.completion_tokens:,}"


def cost_text(usage: TokenUsage | None) -> str:
    return "–" if usage is None else f"{usage.cost_usd:.4f}"


def learning_cost_text(usage: TokenUsage) -> str:
    """What learning cost: ``learning: 12 model calls, 3,400 tokens, est. cost 0.0120 USD``."""
    tokens = usage.prompt_tokens + usage.completion_tokens
    return f"learning: {usage.calls} model calls, {tokens:,} tokens, est. cost {usage.cost_usd:.4f} USD"


def caption(report: Report) -> str:
    benchmark = benchmark_label(report.benchmark)
    return (
        f"{benchmark}: success rate / progress rate in %, mean ± sample standard deviation over seeds "
        "(the mean alone for one seed); the tokens of the runs' model calls and their estimated cost (USD; calls to a "
        "model of unknown price count 0)"
    )


def _md(text: str) -> str:
    """Untrusted text as Markdown that shows it literally: no HTML, link, code, emphasis nor table cell break."""
    text = cut(text).replace("\n", " ")
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
    header += ["learned_steps", "learned_step_share", "learned_worked_share", "learned_acted_share"]
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
        values += (
            ["", "", "", ""]
            if learned is None
            else [learned.learned_steps, learned.share, learned.success, learned.acted]
        )
        usage = row.usage
        if usage is None:
            values += ["", "", "", ""]
        else:
            values += [usage.calls, usage.prompt_tokens, usage.completion_tokens, usage.cost_usd]
        writer.writerow(values)
    return out.getvalue()
