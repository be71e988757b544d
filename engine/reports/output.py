"""Writing a report's files (Markdown, CSV, plots) atomically into the folder the user named."""

from __future__ import annotations

from pathlib import Path

from learnact.actions.files import write_atomic
from learnact.engine.reports.model import PlotFormat, Report, ReportError
from learnact.engine.reports.plots import plot_learning, plot_success
from learnact.engine.reports.render import render_csv, render_markdown

MARKDOWN = "report.md"
CSV = "report.csv"
SUCCESS_PLOT = "success"
LEARNING_PLOT = "learning"


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
