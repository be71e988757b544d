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

from learnact.actions.errors import LearnactError
from learnact.engine.agents.policy import PROGRAM_MAX_TOKENS
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
from learnact.engine.llm import LOCAL, Backbone, CachedBackbone, ResponseCache, make_backbone
from learnact.engine.records import RETRIED, EpisodeRecord, Method, ModelSettings, RunSettings, Summary
from learnact.engine.rundir import RunDir
from learnact.envs import make_env, select_tasks
from learnact.sandbox import SandboxConfig

DEFAULT_MAX_STEPS = {"expert": 100, "pddl": 30, "alfworld": 20}  # model methods: the paper's budgets
DEFAULT_SERVER_MODEL = "gpt-4o-mini"  # --model when OPENAI_API_KEY is set and none is given
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
        self.errors += record.status in RETRIED
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
    max_steps: Annotated[
        Optional[int], typer.Option(min=1, help="steps per episode [default: 100 expert; 30 PDDL, 20 ALFWorld]")
    ] = None,
    model: Annotated[
        Optional[str], typer.Option(help=f"model of a model method; '{LOCAL}' runs one in process")
    ] = None,
    base_url: Annotated[Optional[str], typer.Option(help="an OpenAI-compatible server (else OPENAI_BASE_URL)")] = None,
    api_key_env: Annotated[
        Optional[str], typer.Option(help="the environment variable holding the API key [default: OPENAI_API_KEY]")
    ] = None,
    cache_dir: Annotated[
        Optional[Path], typer.Option(help="the response cache's folder [default: $XDG_CACHE_HOME/learnact]")
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="ask the model every time; store nothing")] = False,
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
    if max_steps is None:
        kind = "expert" if not method.uses_model else "alfworld" if spec.name.startswith("alfworld") else "pddl"
        max_steps = DEFAULT_MAX_STEPS[kind]
    backbone: Backbone | None = None
    model_settings: ModelSettings | None = None
    if method.uses_model:
        api_key = os.environ.get(api_key_env) if api_key_env else None
        if api_key_env and not api_key:
            raise fail(f"the variable {api_key_env} (--api-key-env) is not set")
        if model is None:
            if not (api_key or os.environ.get("OPENAI_API_KEY")):
                raise fail(
                    f"the method {method.value} needs a language model: give --model with OPENAI_API_KEY set "
                    f"(or --base-url of an OpenAI-compatible server), or --model {LOCAL} for a small model run "
                    "in process"
                )
            model = DEFAULT_SERVER_MODEL
        base_url = base_url or (os.environ.get("OPENAI_BASE_URL") if model != LOCAL else None)
        tokens = {"max_tokens": PROGRAM_MAX_TOKENS} if method is Method.code_as_policy else {}
        model_settings = ModelSettings(model=model, base_url=base_url, **tokens)
        with reported():
            backbone = make_backbone(model, base_url, api_key, cache_dir=cache_dir)
            if not no_cache:
                backbone = CachedBackbone(backbone, ResponseCache(cache_dir))
    settings = RunSettings(env=spec, method=method, max_steps=max_steps, sandbox=sandbox, model=model_settings)
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
                summary = run_evaluation(config, out, on_episode=on_episode, on_start=on_start, backbone=backbone)
        except KeyboardInterrupt:
            err.print(f"interrupted: finished episodes are kept in {shown(str(out))}; run the same command to resume")
            raise typer.Exit(ExitCode.INTERRUPTED) from None
        finally:
            if backbone is not None:
                _close(backbone)

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


def _close(backbone: Backbone) -> None:
    try:
        backbone.close()
    except (LearnactError, OSError) as exc:  # closing must not hide the run's outcome
        err.print(f"[yellow]warning:[/yellow] closing the model backbone: {shown(str(exc))}")


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
    if summary.usage is not None:
        u = summary.usage
        console.print(
            f"model calls: {u.calls} ({u.cached_calls} from the cache, {u.failed_calls} failed), "
            f"tokens: {u.prompt_tokens} prompt + {u.completion_tokens} completion, est. cost ${u.cost_usd:.4f}",
            soft_wrap=True,
        )
    failed = [r for r in summary.results if r.status in RETRIED]
    for row in failed[:SHOWN_ERRORS]:
        first_line = (row.error or "").splitlines()[0] if row.error else ""
        console.print(f"[red]{row.status}[/red] {shown(row.task)}: {shown(first_line)}", soft_wrap=True)
    if len(failed) > SHOWN_ERRORS:
        console.print(f"... and {len(failed) - SHOWN_ERRORS} more", soft_wrap=True)
    console.print(shown(f"results: {out}/episodes.jsonl, {out}/summary.json"), soft_wrap=True)
