"""The report's plots with matplotlib (imported only here, when a plot is drawn: it costs every command ~1 s
otherwise): success per method, and the score across the learning rounds of LearnAct runs. Untrusted labels are
cut and their mathtext escaped."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from learnact.engine.reports.model import PlotFormat, Report, benchmark_label, cut

if TYPE_CHECKING:  # matplotlib is imported where a plot is drawn: it costs every command ~1 s otherwise
    from matplotlib.figure import Figure

# --- plots --------------------------------------------------------------------------------------------------


def _plot_text(text: str) -> str:
    """Untrusted text as a matplotlib label: shown literally (``$`` would start mathtext), bounded."""
    return cut(text).replace("$", r"\$")


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
    axes.set_title(f"Success per method, {benchmark_label(report.benchmark)}")
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
