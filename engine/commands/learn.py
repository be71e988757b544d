"""`learnact learn`: learn from an environment's training tasks what `learnact eval` then uses (the notes of
the reflexion methods; the learned actions of LearnAct). Each method's learning is one branch of
:func:`learn`, after the options every method shares (environment, split, model, sandbox) are read."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from learnact.engine.agents import BUILTIN_METHODS, Learns, method_spec
from learnact.engine.commands.common import ExitCode, err, fail, learning_run, reported, resumable
from learnact.engine.commands.learnact import learn_actions
from learnact.engine.commands.options import (
    EnvOptions,
    ExecutorOptions,
    ModelOptions,
    OptionGroup,
    OutputOptions,
    SandboxOptions,
    run_choice,
    with_groups,
)
from learnact.engine.llm import Backbone
from learnact.engine.markup import shown
from learnact.engine.records import EpisodeRecord, ModelSettings
from learnact.engine.runs.executor import ExecutorName
from learnact.engine.runs.learnact_run import LearningServices, learnact_run_config
from learnact.engine.runs.learning import (
    NOTES,
    NotesFile,
    ReflexionConfig,
    ReflexionSummary,
    notes_for,
    run_reflexion,
)
from learnact.engine.runs.planning import close_backbone, open_planned_model, plan_learning, planned_model
from learnact.engine.splits import TRAIN_PER_TYPE, Split
from learnact.envs import EnvSpec
from learnact.learner.learnact import LearnactConfig
from learnact.learner.reflexion import ROUNDS, Note


class UsagePlacementChoice(str, Enum):
    first = "first"
    last = "last"
    alone = "alone"
    chosen = "chosen"


class LearnactOptions(OptionGroup):
    """What only LearnAct's learning takes: how many sets, which model writes them, what is kept."""

    samples: Annotated[
        Optional[int], typer.Option(min=1, help="learnact: candidate action sets created, and new ones per round [4]")
    ] = None
    learner_model: Annotated[
        Optional[str],
        typer.Option(help="learnact: the model that writes the actions (same server options) [default: --model]"),
    ] = None
    learner_temperature: Annotated[
        Optional[float],
        typer.Option(
            min=0.0,
            max=2.0,
            help="learnact: the learner's sampling temperature when it writes actions (fixes are asked at 0)"
            " [default: 0.7; 0.2 for --model local]",
        ),
    ] = None
    drop_unused: Annotated[
        bool,
        typer.Option(
            "--drop-unused",
            help="learnact: drop the actions of the best set the agent never called while scoring (the paper, and"
            " the default, keep the set whole)",
        ),
    ] = False
    usage_placement: Annotated[
        Optional[UsagePlacementChoice],
        typer.Option(
            help="learnact: where the agent reads the learned set's usage demonstration: first (before the primitive"
            " demonstration, as the paper), last (after it), alone (instead of it), chosen (the first best set with"
            " a usage demonstration scored each way on the training tasks, before the optimisation rounds, which"
            " then score so: the highest score kept, then the most progress) [chosen]",
        ),
    ] = None

    def config(self, env_name: str, rounds: int) -> LearnactConfig:
        """The learner's settings these options and ``rounds`` name, ``env_name``'s defaults for the rest.

        :raises pydantic.ValidationError: for a value out of range.
        """
        placement = self.usage_placement.value if self.usage_placement is not None else None
        return LearnactConfig.for_env(
            env_name, samples=self.samples, rounds=rounds, drop_unused=self.drop_unused, usage_placement=placement
        )


@with_groups
def learn(
    *,
    env_options: EnvOptions,
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
    learnact_options: LearnactOptions,
    max_steps: Annotated[
        Optional[int],
        typer.Option(min=1, help="steps per training attempt and per scoring episode (default: the environment's)"),
    ] = None,
    output: OutputOptions,
    model_options: ModelOptions,
    sandbox_options: SandboxOptions,
    executing: ExecutorOptions,
) -> None:
    """Learn from the training tasks of ENV (chosen by --seed) what `learnact eval` uses at test time."""
    learns = _what_is_learned(method, learnact_options, executing)
    with reported():
        prices = model_options.prices()
        choice = run_choice(env_options, method, model_options, sandbox_options, max_steps)
        plan = plan_learning(choice, seed=seed, train_per_type=train_per_type)
        out = output.run_dir(f"{env_options.env}-{method}-learn-seed{seed}")
        runner = executing.open(method, plan.model)
    opened: list[Backbone] = []
    try:
        with resumable(out, "what was learned is"), reported():
            backbone, model_settings = open_planned_model(plan.model, plan.run.model)
            opened.append(backbone)
            plan = plan.model_copy(update={"run": plan.run.model_copy(update={"model": model_settings})})
            if learns is Learns.notes:
                notes = ReflexionConfig(run=plan.run, seed=plan.split.seed, train=plan.split.train, rounds=rounds)
                _learn_notes(notes, plan.split, out, LearningServices(backbone, prices=prices), output.json_output)
                return
            learner = _learner(method, model_options, learnact_options.learner_model)
            if learner is not None:
                opened.append(learner[0])
            learner_model, learner_settings = learner if learner is not None else (None, None)
            learnact = learnact_options.config(plan.run.env.name, rounds)
            config = learnact_run_config(
                plan.run, plan.split, learnact, learner_settings, learnact_options.learner_temperature
            )
            services = LearningServices(backbone, learner_model, prices, executor=runner, workers=executing.workers)
            learn_actions(config, out, services, output.json_output)
    finally:
        for model in opened:
            close_backbone(model)
        runner.close()


def _what_is_learned(method: str, learnact_options: LearnactOptions, executing: ExecutorOptions) -> Learns:
    """What ``method`` learns, the options checked against it.

    :raises typer.Exit: (the error printed, status USAGE) for a method that learns nothing, or LearnAct's
        options (its own, or those that spread its scoring episodes) given to a reflexion method.
    """
    with reported():
        learns = method_spec(method).learns
    if learns is None:
        names = ", ".join(name for name, spec in BUILTIN_METHODS.items() if spec.learns is not None)
        raise fail(f"learnact learn takes --method {names}; {method} learns nothing")
    given = {
        "--drop-unused": learnact_options.drop_unused,
        "--learner-temperature": learnact_options.learner_temperature is not None,
        "--usage-placement": learnact_options.usage_placement is not None,
    }
    flag = next((name for name, set_ in given.items() if set_), None)
    if learns is Learns.notes and flag is not None:
        raise fail(f"{flag}: reflexion learns notes, not actions (learnact learns actions)")
    if learns is Learns.notes and (executing.chosen(method) is not ExecutorName.threads or executing.workers != 1):
        raise fail(
            "--executor and --workers spread learnact's scoring episodes; a reflexion attempt waits on the "
            "reflection before it, so its attempts run here, one at a time"
        )
    return learns


def _learner(
    method: str, model_options: ModelOptions, learner_model: str | None
) -> tuple[Backbone, ModelSettings] | None:
    """``--learner-model``: the model that writes the actions, on the server the options name, its answers as
    long as the method's; None when it is not given or is the agent's model (the agent's backbone writes them).

    :raises LearnactError: when it cannot be built (see :func:`make_backbone`).
    """
    if learner_model is None or learner_model == model_options.model:
        return None
    description = model_options.description().model_copy(update={"model": learner_model, "model_path": None})
    planned = planned_model(method, description, model_options.temperature)
    assert planned is not None  # every learning method uses a model
    return open_planned_model(*planned)


def _learn_notes(
    config: ReflexionConfig, chosen: Split, out: Path, services: LearningServices, json_output: bool
) -> None:
    """The reflexion methods: attempts, reflections and retries on the training tasks of ``chosen`` with
    ``services``' agent; the notes."""
    settings, rounds, quiet = config.run, config.rounds, json_output

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
            config, out, services.agent, split=chosen, prices=services.prices, on_attempt=on_attempt, on_note=on_note
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
            shown(row.task),
            str(row.attempt + 1),
            str(row.notes_shown),
            "yes" if row.success else "no",
            f"{row.progress:.0%}",
            str(row.steps),
            shown(row.ended or ""),
        )
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
    run = learning_run(method, Learns.notes, notes, "--notes", env)
    if run is None:
        return None
    with reported():
        return notes_for(run, env, method)
