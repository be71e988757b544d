"""`learnact eval`: run a method over an environment's tasks through the sandbox."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from learnact.engine.cli_common import (
    DEFAULT_BACKEND,
    DEFAULT_RUNTIME,
    DEFAULT_SPLIT,
    AlfworldDataOption,
    BackendOption,
    ExitCode,
    PddlDomainOption,
    RuntimeOption,
    SplitOption,
    env_spec,
    err,
    fail,
    reported,
    shown,
)
from learnact.engine.evaluation import EvalConfig, run_evaluation
from learnact.engine.records import EpisodeRecord, Method, RunSettings, Summary
from learnact.engine.rundir import RunDir
from learnact.envs import make_env, select_tasks
from learnact.sandbox import SandboxConfig

SHOWN_ERRORS = 10  # episodes ended by an error listed under the summary table
PROGRESS_EVERY_S = 10.0  # plain progress lines (stderr not a terminal): at most one per interval


class PlainProgress:
    """Progress for a stderr that is not a terminal (a log file, CI): plain lines, at most one every
    PROGRESS_EVERY_S seconds, and always one for the last episode."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.started = time.monotonic()
        self.last_line = self.started
        self.finished = self.total = self.errors = 0

    def start(self, finished: int, total: int) -> None:
        self.finished, self.total = finished, total
        resumed = f", {finished} already finished" if finished else ""
        err.print(f"{shown(self.label)}: {total} episodes{resumed}")

    def advance(self, record: EpisodeRecord) -> None:
        self.finished += 1
        self.errors += record.status == "error"
        now = time.monotonic()
        if now - self.last_line >= PROGRESS_EVERY_S or self.finished >= self.total:
            self.last_line = now
            errors = f", {self.errors} ended by an error" if self.errors else ""
            elapsed = now - self.started
            err.print(f"{shown(self.label)}: {self.finished}/{self.total} episodes{errors} ({elapsed:.0f} s)")


def evaluate(
    env: Annotated[
        str, typer.Option(help="pddl/<domain>, pddl (with --pddl-domain/--pddl-problems), alfworld or alfworld/<type>")
    ],
    method: Annotated[Method, typer.Option(help="how actions are chosen")] = Method.expert,
    tasks: Annotated[Optional[str], typer.Option(help="indices and ranges (0-4,7) or task ids; default: all")] = None,
    workers: Annotated[int, typer.Option(min=1, help="episodes run in parallel, each with its own sandbox")] = 1,
    max_steps: Annotated[int, typer.Option(min=1, help="steps per episode")] = 100,
    out: Annotated[Optional[Path], typer.Option(help="run directory; re-running with the same one resumes")] = None,
    pddl_domain: PddlDomainOption = None,
    pddl_problems: Annotated[
        Optional[list[Path]],
        typer.Option(help="external PDDL problem files or folders of them (--env pddl); several may follow one flag"),
    ] = None,
    alfworld_data: AlfworldDataOption = None,
    split: SplitOption = DEFAULT_SPLIT,
    backend: BackendOption = DEFAULT_BACKEND,
    runtime: RuntimeOption = DEFAULT_RUNTIME,
    json_output: Annotated[bool, typer.Option("--json", help="print only the summary as JSON")] = False,
    more_problems: Annotated[
        Optional[list[Path]],
        typer.Argument(hidden=True, metavar="PDDL_PROBLEM", help="more --pddl-problems (`--pddl-problems p/*.pddl`)"),
    ] = None,
) -> None:
    """Evaluate METHOD on the tasks of ENV; every step runs as checked code in the sandbox."""
    if more_problems and not pddl_problems:
        raise fail(
            f"unexpected argument {more_problems[0]}: only --pddl-problems takes several values "
            "(`--pddl-problems FILE... | DIR`)"
        )
    with reported():
        spec = env_spec(env, pddl_domain, [*(pddl_problems or ()), *(more_problems or ())], alfworld_data, split)
        chosen = select_tasks(make_env(spec), tasks)
        out = out or Path("runs") / f"{env.replace('/', '-')}-{method.value}"
        RunDir(out).check_usable()
    cores = os.cpu_count() or 1
    if workers > 2 * cores:
        err.print(
            f"[yellow]warning:[/yellow] --workers {workers} is far above the {cores} CPU cores of this machine; "
            "the episodes will compete for them (and their timeouts may fire)"
        )
    sandbox = SandboxConfig(backend=backend, runtime=runtime)
    settings = RunSettings(env=spec, method=method, max_steps=max_steps, sandbox=sandbox)
    config = EvalConfig(run=settings, tasks=chosen, workers=workers)
    label = f"{env} · {method.value}"
    plain = PlainProgress(label) if not json_output and not err.is_terminal else None
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=json_output or not err.is_terminal,
    ) as progress:
        bar = progress.add_task(shown(label), total=len(chosen))

        def on_start(finished: int, total: int) -> None:
            progress.update(bar, completed=finished, total=total)
            if plain is not None:
                plain.start(finished, total)

        def on_episode(record: EpisodeRecord) -> None:
            progress.advance(bar)
            if plain is not None:
                plain.advance(record)

        try:
            with reported():
                summary = run_evaluation(config, out, on_episode=on_episode, on_start=on_start)
        except KeyboardInterrupt:
            err.print(f"interrupted: finished episodes are kept in {shown(str(out))}; run the same command to resume")
            raise typer.Exit(ExitCode.INTERRUPTED) from None

    if json_output:
        sys.stdout.write(summary.model_dump_json() + "\n")
    else:
        show_summary(summary, out)
    if summary.errors:
        err.print(
            f"[red]{summary.errors} episode{'s' * (summary.errors != 1)} ended by an error[/red] "
            "(see `error` in episodes.jsonl); run the same command to retry them"
        )
        raise typer.Exit(ExitCode.EPISODE_ERRORS)


def show_summary(summary: Summary, out: Path) -> None:
    console = Console()
    table = Table(title=shown(f"{summary.env} · {summary.method}"))
    columns = ("type", "episodes", *(("errors",) if summary.errors else ()), "success rate", "progress rate")
    for column in columns:
        table.add_column(column, justify="left" if column == "type" else "right")
    for name, row in summary.per_type.items():
        errors = (str(row.errors),) if summary.errors else ()
        table.add_row(shown(name), str(row.episodes), *errors, f"{row.success_rate:.1%}", f"{row.progress_rate:.1%}")
    table.add_section()
    table.add_row(
        "all", str(summary.episodes), *((str(summary.errors),) if summary.errors else ()),
        f"{summary.success_rate:.1%}", f"{summary.progress_rate:.1%}", style="bold",
    )  # fmt: skip
    console.print(table)
    failed = [r for r in summary.results if r.status == "error"]
    for row in failed[:SHOWN_ERRORS]:
        first_line = (row.error or "").splitlines()[0] if row.error else ""
        console.print(f"[red]error[/red] {shown(row.task)}: {shown(first_line)}", soft_wrap=True)
    if len(failed) > SHOWN_ERRORS:
        console.print(f"... and {len(failed) - SHOWN_ERRORS} more", soft_wrap=True)
    console.print(shown(f"results: {out}/episodes.jsonl, {out}/summary.json"), soft_wrap=True)
