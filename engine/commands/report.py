"""`learnact report`: the paper's table for the runs given, in the terminal and as Markdown, CSV and plots.

Every name a run brings (task types, model names, paths) is untrusted and reaches the terminal through
``shown()``; the files are written atomically and never into a run unless asked (``--out``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from learnact.engine.commands.common import err, fail, reported
from learnact.engine.markup import shown
from learnact.engine.reports.model import PlotFormat, Report
from learnact.engine.reports.output import write_file, write_report
from learnact.engine.reports.render import (
    caption,
    cell_text,
    cost_text,
    learned_text,
    learning_cost_text,
    render_csv,
    render_markdown,
    tokens_text,
)
from learnact.engine.reports.table import build_report

PIPE_WIDTH = 1000


def report(
    runs: Annotated[
        list[Path],
        typer.Argument(
            metavar="RUN",
            help="run directories of learnact eval (the table) and of learnact learn (the learning rounds)",
            show_default=False,
        ),
    ],
    markdown: Annotated[
        Optional[Path], typer.Option("--markdown", metavar="FILE", help="write the table as Markdown")
    ] = None,
    csv: Annotated[Optional[Path], typer.Option("--csv", metavar="FILE", help="write the table as CSV")] = None,
    out: Annotated[
        Optional[Path],
        typer.Option("--out", metavar="DIR", help="write report.md, report.csv and the plots into this folder"),
    ] = None,
    image_format: Annotated[
        Optional[PlotFormat], typer.Option("--format", help="the plots' format (with --out; default png)")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="print only the report as JSON")] = False,
) -> None:
    """The paper's table for RUN...: methods × domains (ALFWorld: task types), success and progress rates as
    mean ± std over seeds, tokens and cost; with --out, plots of success per method and of the score across
    learning rounds."""
    if image_format is not None and out is None:
        raise fail("--format is the format of the plots, which --out writes: give --out DIR too")
    with reported():
        result = build_report(runs)
        written = []
        if markdown is not None:
            write_file(markdown, render_markdown(result))
            written.append(markdown)
        if csv is not None:
            write_file(csv, render_csv(result))
            written.append(csv)
        if out is not None:
            written += write_report(result, out, image_format or PlotFormat.png)
    if json_output:
        sys.stdout.write(result.model_dump_json() + "\n")
        return
    show_report(result)
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/yellow] {shown(warning)}")
    for path in written:
        err.print(f"written: {shown(str(path))}")


def show_report(result: Report) -> None:
    """The table and the learning rounds on stdout, every untrusted name made visible."""
    console = Console(highlight=False, emoji=False)
    if not console.is_terminal:  # a file or a pipe: no column squeezed, however many there are
        console.width = PIPE_WIDTH
    if result.rows:
        # a cell holds the success rate over the progress rate: two short lines that a narrow terminal keeps whole
        table = Table(
            title="learnact report",
            caption=shown(caption(result).replace(" / ", " over ", 1)),
            show_lines=True,
        )
        for column in ("method", "model", "seeds"):
            table.add_column(column, justify="right" if column == "seeds" else "left")
        for column in result.columns:
            table.add_column(shown(column), justify="right")
        table.add_column("learned actions", justify="right")
        table.add_column("tokens", justify="right")
        table.add_column("cost (USD)", justify="right")
        for row in result.rows:
            table.add_row(
                row.method,
                shown(row.model) if row.model else "–",
                row.seeds,
                *(cell_text(row.cells.get(column), between="\n") for column in result.columns),
                learned_text(row.learned),
                tokens_text(row.usage),
                cost_text(row.usage),
            )
        console.print(table)
    if result.learning:
        rounds = Table(title="score across learning rounds")
        for column in ("library", "round", "best score", "candidates' scores", "rolled back"):
            rounds.add_column(column, justify="right" if column in ("round", "best score") else "left")
        for curve in result.learning:
            for record in curve.rounds:
                scores = ", ".join(f"{c.score:.3f}" for c in record.candidates)
                rolled = "yes" if record.rolled_back else ""
                rounds.add_row(shown(curve.library), str(record.round), f"{record.best_score:.3f}", scores, rolled)
        console.print(rounds)
        for curve in result.learning:
            if curve.usage is not None:
                console.print(f"{shown(curve.library)}: {learning_cost_text(curve.usage)}", soft_wrap=True)
