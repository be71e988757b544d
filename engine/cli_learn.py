"""`learnact learn`: learn from an environment's training tasks what `learnact eval` then uses (the notes of
the reflexion methods; the learned actions of LearnAct). Each method's learning is one branch of
:func:`learn`, after the options every method shares (environment, split, model, sandbox) are read."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from learnact.engine.agents import BUILTIN_METHODS, Learns, method_spec
from learnact.engine.cli_common import (
    DEFAULT_BACKEND,
    DEFAULT_RUNTIME,
    DEFAULT_SPLIT,
    DEFAULT_TEMPERATURE,
    AlfworldDataOption,
    ApiKeyEnvOption,
    ApiVersionOption,
    AzureEndpointOption,
    BackendOption,
    BaseUrlOption,
    CacheDirOption,
    ExecutorOption,
    ExitCode,
    MaxTokensOption,
    ModelOption,
    ModelPathOption,
    ModelRetriesOption,
    ModelTimeoutOption,
    NCtxOption,
    NoCacheOption,
    PddlDomainOption,
    PddlProblemsOption,
    PriceFileOption,
    RayAddressOption,
    RayCpusOption,
    RuntimeOption,
    SplitOption,
    TemperatureOption,
    close_backbone,
    env_spec,
    err,
    fail,
    open_executor,
    open_model,
    reported,
    resumable,
    shown,
)
from learnact.engine.cli_learnact import learn_actions
from learnact.engine.executor import ExecutorName
from learnact.engine.learning import (
    NOTES,
    NotesFile,
    ReflexionConfig,
    ReflexionSummary,
    notes_for,
    run_reflexion,
)
from learnact.engine.llm import Backbone, PriceTable
from learnact.engine.llm.base import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_S
from learnact.engine.records import EpisodeRecord, ModelSettings, RunSettings
from learnact.engine.rundir import RunDir
from learnact.engine.splits import TRAIN_PER_TYPE, Split, split_tasks
from learnact.envs import EnvSpec, env_profile, make_env
from learnact.learner.reflexion import ROUNDS, Note
from learnact.sandbox import SandboxConfig


def learn(
    env: Annotated[
        str, typer.Option(help="pddl/<domain>, pddl (with --pddl-domain/--pddl-problems), alfworld or alfworld/<type>")
    ],
    method: Annotated[
        str, typer.Option(help="what to learn: act_reflexion or react_reflexion (notes), learnact (actions)")
    ],
    seed: Annotated[int, typer.Option(min=0, help="chooses the training tasks; sent with every model request")] = 0,
    train_per_type: Annotated[
        int, typer.Option(min=1, help="training tasks per domain or task type, chosen by --seed")
    ] = TRAIN_PER_TYPE,
    rounds: Annotated[
        int,
        typer.Option(
            min=0,
            help="reflexion: reflections per failed training task, each followed by a retry; learnact: "
            "optimisation rounds",
        ),
    ] = ROUNDS,
    samples: Annotated[
        Optional[int], typer.Option(min=1, help="learnact: candidate action sets created, and new ones per round [4]")
    ] = None,
    learner_model: Annotated[
        Optional[str],
        typer.Option(help="learnact: the model that writes the actions (same server options) [default: --model]"),
    ] = None,
    learner_temperature: Annotated[
        Optional[float],
        typer.Option(
            min=0.0,
            max=2.0,
            help="learnact: the learner's sampling temperature when it writes actions (fixes are asked at 0)"
            " [default: 0.7; 0.2 for --model local]",
        ),
    ] = None,
    drop_unused: Annotated[
        bool,
        typer.Option(
            "--drop-unused",
            help="learnact: drop the actions of the best set the agent never called while scoring (the paper, and"
            " the default, keep the set whole)",
        ),
    ] = False,
    max_steps: Annotated[
        Optional[int],
        typer.Option(min=1, help="steps per training attempt and per scoring episode (default: the environment's)"),
    ] = None,
    out: Annotated[Optional[Path], typer.Option(help="run directory; re-running with the same one resumes")] = None,
    model: ModelOption = None,
    model_path: ModelPathOption = None,
    n_ctx: NCtxOption = None,
    base_url: BaseUrlOption = None,
    api_key_env: ApiKeyEnvOption = None,
    azure_endpoint: AzureEndpointOption = None,
    api_version: ApiVersionOption = None,
    temperature: TemperatureOption = DEFAULT_TEMPERATURE,
    max_tokens: MaxTokensOption = None,
    cache_dir: CacheDirOption = None,
    no_cache: NoCacheOption = False,
    price_file: PriceFileOption = None,
    model_timeout: ModelTimeoutOption = DEFAULT_TIMEOUT_S,
    model_retries: ModelRetriesOption = DEFAULT_MAX_RETRIES,
    pddl_domain: PddlDomainOption = None,
    pddl_problems: PddlProblemsOption = None,
    alfworld_data: AlfworldDataOption = None,
    split: SplitOption = DEFAULT_SPLIT,
    backend: BackendOption = DEFAULT_BACKEND,
    runtime: RuntimeOption = DEFAULT_RUNTIME,
    workers: Annotated[
        int, typer.Option(min=1, help="learnact: scoring episodes run in parallel, each with its own sandbox")
    ] = 1,
    executor: ExecutorOption = None,
    ray_address: RayAddressOption = None,
    ray_cpus_per_episode: RayCpusOption = 1.0,
    json_output: Annotated[bool, typer.Option("--json", help="print only the summary as JSON")] = False,
) -> None:
    """Learn from the training tasks of ENV (chosen by --seed) what `learnact eval` uses at test time."""
    with reported():
        learns = method_spec(method).learns
    if learns is None:
        names = ", ".join(name for name, spec in BUILTIN_METHODS.items() if spec.learns is not None)
        raise fail(f"learnact learn takes --method {names}; {method} learns nothing")
    with reported():
        spec = env_spec(env, pddl_domain, pddl_problems, alfworld_data, split)
        chosen = split_tasks(make_env(spec).tasks(), seed, per_type=train_per_type)
        out = out or Path("runs") / f"{env.replace('/', '-')}-{method}-learn-seed{seed}"
        RunDir(out).check_usable()
    backbone, model_settings, prices = open_model(
        method, model=model, model_path=model_path, n_ctx=n_ctx, base_url=base_url, api_key_env=api_key_env,
        azure_endpoint=azure_endpoint, api_version=api_version, temperature=temperature, max_tokens=max_tokens,
        cache_dir=cache_dir, no_cache=no_cache, model_timeout=model_timeout, model_retries=model_retries,
        price_file=price_file,
    )  # fmt: skip
    assert backbone is not None  # every learning method uses a model
    settings = RunSettings(
        env=spec,
        method=method,
        max_steps=max_steps or env_profile(spec.name).learn_steps,
        sandbox=SandboxConfig(backend=backend, runtime=runtime),
        model=model_settings,
    )
    learner: tuple[Backbone, ModelSettings] | None = None
    if learns is Learns.notes and (drop_unused or learner_temperature is not None):
        close_backbone(backbone)
        flag = "--drop-unused" if drop_unused else "--learner-temperature"
        raise fail(f"{flag}: reflexion learns notes, not actions (learnact learns actions)")
    if learns is Learns.notes and (executor not in (None, ExecutorName.threads) or workers != 1):
        close_backbone(backbone)
        raise fail(
            "--executor and --workers spread learnact's scoring episodes; a reflexion attempt waits on the "
            "reflection before it, so its attempts run here, one at a time"
        )
    with reported():
        runner = open_executor(
            executor,
            ray_address,
            ray_cpus_per_episode,
            method,
            api_key_env=api_key_env,
            azure_endpoint=azure_endpoint,
            api_version=api_version,
            model_path=model_path,
            n_ctx=n_ctx,
            cache_dir=cache_dir,
            no_cache=no_cache,
            model_timeout=model_timeout,
            model_retries=model_retries,
        )
    try:
        with resumable(out, "what was learned is"):
            if learns is Learns.library and learner_model is not None and learner_model != model:
                opened = open_model(
                    method, model=learner_model, base_url=base_url, api_key_env=api_key_env,
                    azure_endpoint=azure_endpoint, api_version=api_version, temperature=temperature,
                    cache_dir=cache_dir, no_cache=no_cache, model_timeout=model_timeout,
                    model_retries=model_retries, price_file=price_file,
                )  # fmt: skip
                assert opened.backbone is not None and opened.settings is not None
                learner = (opened.backbone, opened.settings)
            if learns is Learns.notes:
                _learn_notes(settings, chosen, rounds, out, backbone, prices, json_output)
            else:
                learn_actions(
                    settings,
                    chosen,
                    out,
                    backbone,
                    learner,
                    prices,
                    samples,
                    rounds,
                    json_output,
                    runner,
                    workers,
                    drop_unused=drop_unused,
                    learner_temperature=learner_temperature,
                )
    finally:
        close_backbone(backbone)
        close_backbone(learner[0] if learner is not None else None)
        runner.close()


def _learn_notes(
    settings: RunSettings,
    chosen: Split,
    rounds: int,
    out: Path,
    backbone: Backbone,
    prices: PriceTable | None,
    json_output: bool,
) -> None:
    """The reflexion methods: attempts, reflections and retries on the training tasks; the notes."""
    config = ReflexionConfig(run=settings, seed=chosen.seed, train=chosen.train, rounds=rounds)
    quiet = json_output

    def on_attempt(index: int, record: EpisodeRecord, notes: int) -> None:
        if not quiet:
            outcome = "succeeded" if record.success else f"failed ({record.ended}, progress {record.progress:.0%})"
            err.print(
                f"{shown(record.task)}: attempt {index + 1} with {notes} note{'s' * (notes != 1)}: {outcome}, "
                f"{len(record.steps)} steps"
            )

    def on_note(note: Note) -> None:
        if not quiet:
            err.print(f"{shown(note.task)}: reflection {note.round}: {shown(note.text) or '(nothing usable)'}")

    if not quiet:
        err.print(
            f"{shown(settings.env.name)} · {settings.method}: {len(chosen.train)} training tasks "
            f"(seed {chosen.seed}), up to {rounds} reflection{'s' * (rounds != 1)} each"
        )
    with reported():
        summary = run_reflexion(
            config, out, backbone, split=chosen, prices=prices, on_attempt=on_attempt, on_note=on_note
        )
    if json_output:
        sys.stdout.write(summary.model_dump_json() + "\n")
    else:
        show_notes_summary(summary, out)
    if summary.stopped is not None:
        err.print(f"[red]the learning run stopped:[/red] {shown(summary.stopped)}; run the same command to go on")
        raise typer.Exit(ExitCode.EPISODE_ERRORS)


def show_notes_summary(summary: ReflexionSummary, out: Path) -> None:
    """The attempts as a table, the notes (untrusted text, shown literally), the model calls and where the
    notes are."""
    console = Console()
    table = Table(title=shown(f"{summary.env} · {summary.method} · learning (seed {summary.seed})"))
    for column in ("task", "attempt", "notes shown", "success", "progress", "steps", "ended"):
        table.add_column(column, justify="left" if column in ("task", "ended") else "right")
    for row in summary.attempts:
        table.add_row(
            shown(row.task), str(row.attempt + 1), str(row.notes_shown), "yes" if row.success else "no",
            f"{row.progress:.0%}", str(row.steps), shown(row.ended or ""),
        )  # fmt: skip
    console.print(table)
    for note in summary.notes:
        if note.text:
            console.print(f"- {shown(note.text)} [dim]({shown(note.task)}, round {note.round})[/dim]", soft_wrap=True)
    u = summary.usage
    console.print(
        f"model calls: {u.calls} ({u.cached_calls} from the cache, {u.failed_calls} failed), "
        f"tokens: {u.prompt_tokens} prompt + {u.completion_tokens} completion, est. cost ${u.cost_usd:.4f}",
        soft_wrap=True,
    )
    console.print(
        shown(f"notes: {out / NOTES} (use them with `learnact eval --method {summary.method} --notes {out}`)"),
        soft_wrap=True,
    )


def learned_notes(method: str, notes: Path | None, env: EnvSpec) -> NotesFile | None:
    """`learnact eval --notes RUN`: the notes of the learning run RUN for ``method`` on ``env`` (None for a
    method that uses none).

    :raises typer.Exit: (the error printed, status USAGE) for a reflexion method without notes, notes given
        to another method, or notes that do not fit (another environment or method, an unfinished run).
    """
    if method_spec(method).learns is not Learns.notes:
        if notes is not None:
            raise fail(f"--notes: the method {method} uses no notes (act_reflexion and react_reflexion do)")
        return None
    if notes is None:
        raise fail(
            f"the method {method} needs the notes of a learning run: run `learnact learn --method "
            f"{method} --env {env.name} ...` first, then give its run directory as --notes RUN"
        )
    with reported():
        return notes_for(notes, env, method)
