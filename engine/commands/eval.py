"""`learnact eval`: run a method over an environment's tasks through the sandbox."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from learnact.engine.agents import method_names
from learnact.engine.commands.common import ExitCode, err, reported, resumable
from learnact.engine.commands.learn import learned_notes
from learnact.engine.commands.learnact import learned_actions
from learnact.engine.commands.options import (
    EnvOptions,
    ExecutorOptions,
    ModelOptions,
    OutputOptions,
    SandboxOptions,
    run_choice,
    with_groups,
)
from learnact.engine.llm import PriceTable
from learnact.engine.markup import shown
from learnact.engine.records import EpisodeRecord, Method, Summary, TokenUsage, TypeSummary, episode_key
from learnact.engine.rundir import SPLITS
from learnact.engine.runs import planning
from learnact.engine.runs.executor import Executor, ExecutorName
from learnact.engine.runs.planning import EvalPlan, plan_evaluation

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
        self.errors += record.status.retried
        now = time.monotonic()
        if now - self.last_line >= PROGRESS_EVERY_S or self.finished >= self.total:
            self.last_line = now
            errors = f", {self.errors} ended by an error" if self.errors else ""
            elapsed = now - self.started
            err.print(f"{shown(self.label)}: {self.finished}/{self.total} episodes{errors} ({elapsed:.0f} s)")


@with_groups
def evaluate(
    *,
    env_options: EnvOptions,
    method: Annotated[
        str,
        typer.Option(
            help="how actions are chosen: expert, act, react, act_reflexion, react_reflexion, code_as_policy, "
            "learnact, or a plugin's method",
            autocompletion=lambda: method_names(),
        ),
    ] = Method.expert.value,
    tasks: Annotated[Optional[str], typer.Option(help="indices and ranges (0-4,7) or task ids; default: all")] = None,
    seeds: Annotated[
        Optional[int],
        typer.Option(
            min=1,
            help="repeat every task with seeds 0..N-1, the seed of the model's requests and of the training split "
            "(default: 3; 1 for the expert, which is deterministic)",
        ),
    ] = None,
    test_on_rest: Annotated[
        bool,
        typer.Option(
            "--test-on-rest",
            help="leave out each seed's training tasks (the learning run's, else 3 per type drawn by the seed); "
            "default: test on all, as the paper",
        ),
    ] = False,
    max_steps: Annotated[
        Optional[int], typer.Option(min=1, help="steps per episode (default: 100 expert; 30 PDDL, 20 ALFWorld)")
    ] = None,
    model_options: ModelOptions,
    notes: Annotated[
        Optional[Path], typer.Option(help="act_reflexion, react_reflexion: the `learnact learn` run whose notes to use")
    ] = None,
    library: Annotated[
        Optional[Path],
        typer.Option(help="learnact: the learned action library (its folder, or the `learnact learn` run holding it)"),
    ] = None,
    interim: Annotated[
        bool,
        typer.Option(
            "--interim", help="learnact: evaluate the set a learning run that has not finished selected so far"
        ),
    ] = False,
    output: OutputOptions,
    sandbox_options: SandboxOptions,
    executing: ExecutorOptions,
) -> None:
    """Evaluate METHOD on the tasks of ENV; every step runs as checked code in the sandbox."""
    with reported():
        prices = model_options.prices()
        choice = run_choice(env_options, method, model_options, sandbox_options, max_steps)
        plan = plan_evaluation(choice, tasks=tasks, seeds=seeds, workers=executing.workers, test_on_rest=test_on_rest)
        out = output.run_dir(f"{env_options.env}-{method}")
        runner = executing.open(method, plan.model)
    plan = _with_learned(plan, notes, library, interim)
    cores = os.cpu_count() or 1
    if executing.chosen(method) is not ExecutorName.ray and executing.workers > 2 * cores:
        err.print(
            f"[yellow]warning:[/yellow] --workers {executing.workers} is far above the {cores} CPU cores of this "
            "machine; the episodes will compete for them (and their timeouts may fire)"
        )
    summary = _run_with_progress(plan, out, output.json_output, prices, runner)
    _tell_outcome(summary, out, output.json_output)


def _with_learned(plan: EvalPlan, notes: Path | None, library: Path | None, interim: bool) -> EvalPlan:
    """``plan`` with the notes or the actions its method uses, and what they were learned on, in its settings.

    :raises typer.Exit: (the error printed, status USAGE) for learned notes or actions that are missing, given
        to a method that uses none, or do not fit (see :func:`learned_notes`, :func:`learned_actions`).
    """
    run = plan.config.run
    learned = learned_notes(run.method, notes, run.env)
    actions = learned_actions(run.method, library, run.env, interim)
    if learned is not None:
        run = run.model_copy(update={"notes": learned.texts(), "trained_on": learned.train})
    if actions is not None:
        update = {"actions": actions.actions, "actions_by_type": actions.by_type, "trained_on": actions.train}
        run = run.model_copy(update=update)
    return plan.model_copy(update={"config": plan.config.model_copy(update={"run": run})})


def _run_with_progress(plan: EvalPlan, out: Path, quiet: bool, prices: PriceTable | None, runner: Executor) -> Summary:
    """Run the evaluation with a progress bar on a terminal (plain lines otherwise, nothing when ``quiet``);
    the executor is closed at the end, however it ends."""
    label = f"{plan.config.run.env.name} · {plan.config.run.method}"
    plain = PlainProgress(label) if not quiet and not err.is_terminal else None
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=quiet or not err.is_terminal,
    ) as progress:
        bar = progress.add_task(shown(label), total=len(plan.config.tasks) * len(plan.config.seeds))

        def on_start(finished: int, total: int) -> None:
            progress.update(bar, completed=finished, total=total)
            if plain is not None:
                plain.start(finished, total)

        def on_episode(record: EpisodeRecord) -> None:
            progress.advance(bar)
            if plain is not None:
                plain.advance(record)

        try:
            with resumable(out, "finished episodes are"), reported():
                return planning.evaluate(
                    plan, out, executor=runner, prices=prices, on_episode=on_episode, on_start=on_start
                )
        finally:
            runner.close()


def _tell_outcome(summary: Summary, out: Path, json_output: bool) -> None:
    """Print the summary (JSON, or tables) and the episodes to retry.

    :raises typer.Exit: with EPISODE_ERRORS when an episode ended by an error or a model failure.
    """
    if json_output:
        sys.stdout.write(summary.model_dump_json() + "\n")
    else:
        show_summary(summary, out)
    if summary.llm_errors:
        err.print(
            f"[red]{summary.llm_errors} episode{'s' * (summary.llm_errors != 1)} ended by a model failure[/red] "
            "(status llm_error in episodes.jsonl); run the same command to retry them"
        )
    if summary.errors:
        err.print(
            f"[red]{summary.errors} episode{'s' * (summary.errors != 1)} ended by an error[/red] "
            "(see `error` in episodes.jsonl); run the same command to retry them"
        )
    if summary.errors or summary.llm_errors:
        raise typer.Exit(ExitCode.EPISODE_ERRORS)


def show_summary(summary: Summary, out: Path) -> None:
    """The summary as tables: per task type (every seed pooled), then, with more than one seed, per seed
    with their mean ± std; an error column only when some episode ended by one."""
    console = Console()
    failures = {"errors": summary.errors > 0, "llm errors": summary.llm_errors > 0}
    shown_failures = [name for name, any_of in failures.items() if any_of]

    def failure_cells(row: TypeSummary) -> tuple[str, ...]:
        counts = {"errors": row.errors, "llm errors": row.llm_errors}
        return tuple(str(counts[name]) for name in shown_failures)

    table = Table(title=shown(f"{summary.env} · {summary.method}"))
    for column in ("type", "episodes", *shown_failures, "success rate", "progress rate"):
        table.add_column(column, justify="left" if column == "type" else "right")
    for name, row in summary.per_type.items():
        table.add_row(
            shown(name), str(row.episodes), *failure_cells(row), f"{row.success_rate:.1%}", f"{row.progress_rate:.1%}"
        )
    table.add_section()
    table.add_row(
        "all",
        str(summary.episodes),
        *failure_cells(summary),
        f"{summary.success_rate:.1%}",
        f"{summary.progress_rate:.1%}",
        style="bold",
    )
    console.print(table)
    if len(summary.per_seed) > 1:
        console.print(seed_table(summary, shown_failures, failure_cells))
    if summary.usage is not None:
        u = summary.usage
        console.print(
            f"model calls: {u.calls} ({u.cached_calls} from the cache, {u.failed_calls} failed), "
            f"tokens: {u.prompt_tokens} prompt + {u.completion_tokens} completion, est. cost ${u.cost_usd:.4f}",
            soft_wrap=True,
        )
    if summary.learned is not None:
        console.print(summary.learned.describe(), soft_wrap=True)
    several_seeds = len(summary.per_seed) > 1
    failed = [r for r in summary.results if r.status.retried]
    for row in failed[:SHOWN_ERRORS]:
        first_line = (row.error or "").splitlines()[0] if row.error else ""
        episode = episode_key(row.task, row.seed) if several_seeds else row.task
        console.print(f"[red]{row.status}[/red] {shown(episode)}: {shown(first_line)}", soft_wrap=True)
    if len(failed) > SHOWN_ERRORS:
        console.print(f"... and {len(failed) - SHOWN_ERRORS} more", soft_wrap=True)
    console.print(shown(f"results: {out}/episodes.jsonl, {out}/summary.json, {out}/{SPLITS}"), soft_wrap=True)


def seed_table(
    summary: Summary, shown_failures: list[str], failure_cells: Callable[[TypeSummary], tuple[str, ...]]
) -> Table:
    """Per seed: episodes, failures, rates, and (model methods) tokens and estimated cost; then mean ± std
    (sample standard deviation) of the rates over the seeds."""
    used = summary.usage is not None
    table = Table(title="per seed")
    for column in ("seed", "episodes", *shown_failures, "success rate", "progress rate"):
        table.add_column(column, justify="right")
    if used:
        table.add_column("tokens", justify="right")
        table.add_column("est. cost", justify="right")
    for row in summary.per_seed:
        usage = row.usage or TokenUsage()
        table.add_row(
            str(row.seed),
            str(row.episodes),
            *failure_cells(row),
            f"{row.success_rate:.1%}",
            f"{row.progress_rate:.1%}",
            *((f"{usage.prompt_tokens + usage.completion_tokens}", f"${usage.cost_usd:.4f}") if used else ()),
        )
    table.add_section()
    table.add_row(
        "mean ± std",
        "",
        *("" for _ in shown_failures),
        f"{summary.success_mean:.1%} ± {summary.success_std:.1%}",
        f"{summary.progress_mean:.1%} ± {summary.progress_std:.1%}",
        *(("", "") if used else ()),
        style="bold",
    )
    return table
