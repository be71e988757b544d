"""`learnact eval`: run a method over an environment's tasks through the sandbox."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from learnact.engine.cli_sandbox import Backend, Runtime
from learnact.engine.evaluation import EvalConfig, run_evaluation
from learnact.engine.records import Summary
from learnact.envs.registry import EnvSpec, make_env, select_tasks
from learnact.sandbox import SandboxUnavailable
from learnact.sandbox.config import SandboxConfig

err = Console(stderr=True)


class MethodChoice(str, Enum):
    expert = "expert"


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


def evaluate(
    env: Annotated[str, typer.Option(help="pddl/<domain>, pddl (with --pddl-domain/--pddl-problems), alfworld or alfworld/<type>")],
    method: Annotated[MethodChoice, typer.Option(help="how actions are chosen")] = MethodChoice.expert,
    tasks: Annotated[Optional[str], typer.Option(help="indices and ranges (0-4,7) or task ids; default: all")] = None,
    workers: Annotated[int, typer.Option(min=1, help="episodes run in parallel, each with its own sandbox")] = 1,
    max_steps: Annotated[int, typer.Option(min=1, help="steps per episode")] = 100,
    out: Annotated[Optional[Path], typer.Option(help="run directory; re-running with the same one resumes")] = None,
    pddl_domain: Annotated[Optional[Path], typer.Option(help="external PDDL domain file (--env pddl)")] = None,
    pddl_problems: Annotated[Optional[list[Path]], typer.Option(help="external PDDL problem files (--env pddl)")] = None,
    alfworld_data: Annotated[Optional[Path], typer.Option(help="folder holding json_2.1.1/ (default: $ALFWORLD_DATA)")] = None,
    split: Annotated[str, typer.Option(help="ALFWorld split")] = "valid_unseen",
    backend: Annotated[Backend, typer.Option(help="sandbox backend (process: rlimited child; weaker)")] = Backend.docker,
    runtime: Annotated[Runtime, typer.Option(help="OCI runtime of the containers; runsc is gVisor")] = Runtime.runc,
    json_output: Annotated[bool, typer.Option("--json", help="print only the summary as JSON")] = False,
) -> None:
    """Evaluate METHOD on the tasks of ENV; every step runs as checked code in the sandbox."""
    spec = EnvSpec(
        name=env,
        pddl_domain=str(pddl_domain) if pddl_domain else None,
        pddl_problems=tuple(str(p) for p in pddl_problems or ()),
        alfworld_data=str(alfworld_data) if alfworld_data else None,
        split=split,
    )
    try:
        environment = make_env(spec)
        chosen = select_tasks(environment, tasks)
        sandbox = SandboxConfig(backend=backend.value, runtime=runtime.value)
    except (ValueError, KeyError, OSError) as exc:
        raise fail(str(exc).strip("'\"")) from None
    config = EvalConfig(
        env=spec, method=method.value, tasks=chosen, max_steps=max_steps, workers=workers, sandbox=sandbox
    )
    out = out or Path("runs") / f"{env.replace('/', '-')}-{method.value}"

    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, disable=json_output or not err.is_terminal,
    ) as progress:
        bar = progress.add_task(f"{env} · {method.value}", total=len(chosen))
        try:
            summary = run_evaluation(config, out, on_episode=lambda record: progress.advance(bar))
        except KeyboardInterrupt:
            err.print(f"interrupted: finished episodes are kept in {out}; run the same command to resume")
            raise typer.Exit(130) from None
        except SandboxUnavailable as exc:
            raise fail(str(exc), 1) from None
        except ValueError as exc:
            raise fail(str(exc), 2) from None

    if json_output:
        sys.stdout.write(summary.model_dump_json() + "\n")
        return
    show_summary(summary, out)


def show_summary(summary: Summary, out: Path) -> None:
    console = Console()
    table = Table(title=f"{summary.env} · {summary.method}")
    for column in ("type", "episodes", "success rate", "progress rate"):
        table.add_column(column, justify="left" if column == "type" else "right")
    for name, row in summary.per_type.items():
        table.add_row(name, str(row.episodes), f"{row.success_rate:.1%}", f"{row.progress_rate:.1%}")
    table.add_section()
    table.add_row(
        "all", str(summary.episodes), f"{summary.success_rate:.1%}", f"{summary.progress_rate:.1%}",
        style="bold",
    )
    console.print(table)
    console.print(f"results: {out}/episodes.jsonl, {out}/summary.json")
