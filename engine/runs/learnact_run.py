"""A LearnAct learning run: the engine's side of :mod:`learnact.learner.learnact`.

The learner holds the algorithm; this module gives it what lives in the engine: the prompts (text templates
under ``agents/data/prompts/learnact_*.txt``), the learner model behind a :class:`RecordingBackbone` (every
call a line of ``calls.jsonl``, named by the learner's call id), and the scoring of a candidate set: the act
agent with the candidate actions on the training tasks, through :func:`run_evaluation`, one resumable run
directory per candidate under ``score/``. The library is kept at ``<RUN>/library/``.

A run folder holds ``config.json`` (the run's identity: a rerun resumes only the same run),
``learn_state.json`` (where learning stands, replaced atomically after every step), ``calls.jsonl`` and
``library/``. A killed run rerun with the same command continues from its last finished step; the calls it
had made are not made again (the state, and the response cache for a step cut short).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from learnact.actions.errors import LearnactError
from learnact.actions.files import make_folders, write_atomic
from learnact.actions.library import RUN_LIBRARY, Library, LibraryError
from learnact.actions.models import ActionSet
from learnact.actions.transcript import ChatMessage, Turn, render_turns
from learnact.engine.agents import call_code
from learnact.engine.agents.prompts import demonstration, fill, primitives_text
from learnact.engine.llm import (
    LOCAL,
    Backbone,
    CallLog,
    Ledger,
    PriceTable,
    RecordingBackbone,
    chat_request,
)
from learnact.engine.llm.base import ModelFailure
from learnact.engine.llm.grammar import call_lines_grammar, definitions_grammar
from learnact.engine.records import EpisodeRecord, EpisodeStatus, ModelSettings, RunSettings
from learnact.engine.rundir import (
    CONFIG,
    LEARN_STATE,
    RunDir,
    RunDirError,
    RunKind,
    describe_os_error,
    read_model,
)
from learnact.engine.runs.evaluation import EvalConfig, run_evaluation
from learnact.engine.runs.executor import Executor
from learnact.engine.runs.usage import DemoTask, UsageDemonstrator, close_env
from learnact.engine.runs.usage_match import PrimitiveCall, parse_calls
from learnact.engine.splits import Split
from learnact.envs import Environment, EnvSpec, ResetInfo, demonstration_env, env_profile, make_env
from learnact.learner.learnact import (
    AnswerForm,
    Ask,
    LearnactConfig,
    LearnactLearner,
    LearnerPorts,
    LearnState,
    RunTasks,
)
from learnact.learner.scoring import CallView, FailureCase, StepView, Trajectory
from learnact.learner.validation import SandboxValidator
from learnact.sandbox import Sandbox

log = logging.getLogger(__name__)

SCORING = "score"  # score/round-R/candidate-C/: the act agent with candidate C of round R; score/usage-last/: the
# selected set with its usage demonstration shown last
BY_TYPE = "types"  # types/<type>/: the learning run of one task type (a family that learns by type)
SAFE_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")  # a task type that can name a folder
LEARNER_MAX_TOKENS = 2048  # an answer holds several functions
# The learner's sampling temperature, unless --learner-temperature: a server model's samples differ by it and
# by what each sample's prompt asks to look for; a small local model writes worse code when it samples hot.
LEARNER_TEMPERATURE = 0.7
LOCAL_LEARNER_TEMPERATURE = 0.2
MAX_DEMO_STEPS = 60
MAX_STATE_BYTES = 50_000_000


class LearnactRunConfig(BaseModel):
    """A LearnAct learning run (its ``config.json``): what makes it, so that a rerun resumes only the same one.

    :raises pydantic.ValidationError: for an unknown field or a value out of range.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    run: RunSettings  # the act agent that scores candidates (method learnact, its actions: none here)
    learner: ModelSettings  # the model that writes the actions (``--learner-model``; default the agent's)
    learnact: LearnactConfig
    seed: int = Field(0, ge=0)
    train: tuple[str, ...]  # the split's training tasks


class LearnactResult(BaseModel):
    """What a learning run ended with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    library: str
    selected: dict[str, int]
    score: float | None
    rounds: int


# --- prompts ----------------------------------------------------------------------------------------


class LearnactPrompts:
    """The learner's prompts from the ``learnact_*`` templates (a :class:`~learnact.learner.learnact.PromptBook`)."""

    def __init__(self, env: Environment, task_type: str, config: LearnactConfig, demo: str) -> None:
        self.config, self.env_name, self.task_type = config, env.name, task_type
        self.system = fill(
            "learnact_system",
            domain=env_profile(env.name).domain_text(task_type),
            primitives=primitives_text(env.primitives()),
        ).strip()
        self.demo = demo

    def create(self, sample: int) -> list[ChatMessage]:
        style = fill(f"learnact_style_{self.config.style}").strip()
        example = env_profile(self.env_name).worked_example(self.task_type)
        user = fill(
            "learnact_create",
            demonstration=self.demo,
            style=style,
            max_actions=self.config.max_actions,
            focus=_focus("learnact_focus", sample),
            worked_example=fill("learnact_worked_example", code=example).strip() if example else "",
        )
        return [ChatMessage(role="system", content=self.system), ChatMessage(role="user", content=user.strip())]

    def fix(self, problems: str) -> str:
        return fill("learnact_fix", problems=problems).strip()

    def optimise(self, case: FailureCase, actions_code: str, sample: int) -> list[ChatMessage]:
        profile = env_profile(self.env_name)
        update, plan = (profile.worked_improvement(self.task_type, kind) for kind in ("update", "plan"))
        worked = fill("learnact_worked_improvements", update=update, plan=plan).strip() if update and plan else ""
        user = fill(
            "learnact_optimise",
            worked=worked,
            actions=actions_code.strip(),
            goal=case.goal,
            history_label=fill(f"learnact_history_{self.config.history}").strip(),
            history=case.history,
            action=case.name,
            error=case.error,
            substeps="\n".join(case.substeps) or "(none ran)",
            focus=_focus("learnact_optimise_focus", sample, action=case.name),
        )
        return [ChatMessage(role="system", content=self.system), ChatMessage(role="user", content=user.strip())]


def _focus(template: str, sample: int, **fields: object) -> str:
    """The line of ``template`` (one focus per line) that ``sample`` is asked to follow, in turn."""
    focuses = [line for line in fill(template, **fields).splitlines() if line.strip()]
    return focuses[sample % len(focuses)]


def demo_task(env: Environment, spec: EnvSpec, task_type: str, avoid: Sequence[str]) -> DemoTask:
    """The demonstration shown when creating actions, and on which the selected ones are tried out: the stored
    one of ``task_type`` (opened through the family), else the environment's expert on a task of that type
    outside the training tasks ``avoid`` (the training goals stay unseen).

    :raises LearnactError: when the expert cannot solve the task (from the environment).
    """
    stored = demonstration(env.name, task_type, False)
    if stored is not None:
        text = fill("demonstration", goal=stored.goal, initial=stored.initial, history=render_turns(stored.turns))
        return DemoTask(
            text.strip(),
            stored.goal,
            stored.initial,
            parse_calls([turn.text for turn in stored.turns]),
            stored.task,
            lambda: demonstration_env(spec, stored.task, stored.type),
        )
    tasks = [t.id for t in env.tasks() if t.type == task_type]
    task = next((t for t in tasks if t not in avoid), tasks[0])
    reset = env.reset(task)
    turns: list[Turn] = []
    calls: list[PrimitiveCall] = []
    for name, args in env.expert_calls():
        outcome = env.call(name, args)
        turns.append(Turn(call_code(name, args), outcome.observation))
        calls.append((name, tuple(args)))
        if outcome.done or len(turns) >= MAX_DEMO_STEPS:
            break
    text = fill("demonstration", goal=reset.goal, initial=reset.observation, history=render_turns(turns))
    return DemoTask(text.strip(), reset.goal, reset.observation, tuple(calls), task, lambda: make_env(spec))


@dataclass(frozen=True)
class LearningServices:
    """What a learning run works with: the agent that scores candidate sets, the learner model that writes them
    (None: the agent), the price table of the cost estimate (None: the built-in one), where progress lines and
    finished scoring episodes are told, and where the scoring episodes run (``executor``; None: threads here,
    ``workers`` at a time)."""

    agent: Backbone
    learner: Backbone | None = None
    prices: PriceTable | None = None
    progress: Callable[[str], None] = lambda line: None
    on_episode: Callable[[EpisodeRecord], None] = lambda record: None
    executor: Executor | None = None
    workers: int = 1


# --- the model and the scoring, as the learner asks for them ----------------------------------------------


def asker(backbone: RecordingBackbone, settings: ModelSettings, seed: int, max_functions: int) -> Ask:
    """Ask the learner model: each call recorded under ``learn:<call id>``, sample ``s`` sent with the seed
    ``seed * 1000 + s`` (samples differ, and a rerun hits the response cache); a fix at temperature 0; an answer
    of a fixed form under its grammar (at most ``max_functions`` function definitions, or lines of calls)."""

    fix_settings = settings.model_copy(update={"temperature": 0.0})
    definitions_only = definitions_grammar(max_functions)

    def ask(call_id: str, messages: Sequence[ChatMessage], sample: int, fixing: bool, form: AnswerForm) -> str:
        if form.definitions:
            grammar = definitions_only
        elif form.calls:
            grammar = call_lines_grammar(form.calls, form.max_lines)
        else:
            grammar = None
        request = chat_request(
            fix_settings if fixing else settings, messages, seed=seed * 1000 + sample, grammar=grammar
        )
        return backbone.for_episode(f"learn:{call_id}").complete(request).text

    return ask


def trajectory(record: EpisodeRecord, reset: ResetInfo) -> Trajectory:
    """An episode as the learner reads it."""
    steps = []
    for step in record.steps:
        result = step.result
        ran = result.calls if result is not None else []
        calls = [CallView(name=c.name, args=c.args, observation=c.observation, valid=c.valid) for c in ran]
        error = None
        if result is not None and result.error is not None:
            error = f"{result.error.type}: {result.error.message}"
        elif result is not None and result.findings and not result.ok:
            error = "; ".join(f"line {f.line}: {f.message}" for f in result.findings)
        steps.append(
            StepView(
                index=step.index,
                code=step.code,
                observation=step.observation,
                status=result.status if result is not None else None,
                error=error,
                calls=calls,
            )
        )
    return Trajectory(
        task=record.task,
        goal=reset.goal,
        initial=reset.observation,
        success=record.success,
        progress=record.progress,
        steps=steps,
    )


class ScoringFailed(RunDirError, ModelFailure):
    """A scoring episode ended by a model failure: rerunning retries it."""


def scorer(config: LearnactRunConfig, out: Path, services: LearningServices, resets: dict[str, ResetInfo]) -> RunTasks:
    """Run the act agent with a set on the training tasks (``score/<name>``: ``round-R/candidate-C``,
    ``usage-last``)."""

    def run_tasks(actions: ActionSet, name: str) -> list[Trajectory]:
        settings = config.run.model_copy(update={"actions": actions})
        folder = out / SCORING / name
        try:
            make_folders(out, folder)  # a planted link on the way is refused, not followed
        except OSError as exc:
            raise describe_os_error(exc, folder, "create") from None
        evaluation = EvalConfig(run=settings, tasks=config.train, seeds=(config.seed,), workers=services.workers)
        run_evaluation(
            evaluation,
            folder,
            on_episode=services.on_episode,
            backbone=services.agent,
            prices=services.prices,
            executor=services.executor,
        )
        latest = RunDir(folder).latest()
        failed = [r for r in latest.values() if r.status is EpisodeStatus.llm_error]
        if failed:
            raise ScoringFailed(
                folder,
                f"scoring episode {failed[0].task} ended by a model failure: {failed[0].error}",
                "run the same command to retry it",
            )
        return [trajectory(latest[(task, config.seed)], resets[task]) for task in config.train]

    return run_tasks


# --- the run ---------------------------------------------------------------------------------------------


def _read_state(path: Path) -> LearnState | None:
    return read_model(path, LearnState, MAX_STATE_BYTES, root=path.parent, what="a learning state")


def run_learnact(config: LearnactRunConfig, out: Path, services: LearningServices) -> LearnactResult:
    """Learn the actions of ``config`` in the run folder ``out`` (resuming what is there) with ``services``: its
    agent scores the candidates, its learner writes them; an executor it holds stays open for the next candidate.

    :raises RunDirBusy: when another process holds ``out``.
    :raises RunDirError: when ``out`` holds another run, or cannot be read or written.
    :raises LibraryError: when the library cannot be written.
    :raises LLMError: when the learner model gives no answer (rerunning retries).
    :raises SandboxUnavailable: when the sandbox cannot start.
    """
    with RunDir(out, RunKind.learnact).opened(config):
        env = make_env(config.run.env)
        resets = {task: env.reset(task) for task in config.train}
        types = {t.id: t.type for t in env.tasks()}
        task_type = types[config.train[0]]
        demo = demo_task(env, config.run.env, task_type, config.train)
        prompts = LearnactPrompts(env, task_type, config.learnact, demo.text)
        library = Library(out / RUN_LIBRARY, root=out)
        learner = services.learner or services.agent
        recording = RecordingBackbone(learner, Ledger(services.prices, sink=CallLog(out).append))
        state_path = out / LEARN_STATE

        def save(state: LearnState) -> None:
            try:
                write_atomic(state_path, state.model_dump_json() + "\n", root=out)
            except OSError as exc:
                raise describe_os_error(exc, state_path, "write") from None

        ask = asker(recording, config.learner, config.seed, config.learnact.max_actions)
        tries = config.learnact.fix_tries + 1
        demonstrate = UsageDemonstrator(demo, prompts.system, ask, config.run.sandbox, tries, services.progress)
        with Sandbox(config.run.sandbox) as sandbox:
            ports = LearnerPorts(
                prompts, ask, scorer(config, out, services, resets), demonstrate, save, services.progress
            )
            example_env = demo.open_env()
            validator = (
                SandboxValidator(sandbox, example_env, demo.task, demo.calls)
                if example_env is not None
                else SandboxValidator(sandbox, make_env(config.run.env), config.train[0])
            )
            learner_run = LearnactLearner(
                config.learnact, library, validator, ports, config.run.env.name, _read_state(state_path)
            )
            try:
                selected = learner_run.run()
            finally:
                if example_env is not None:
                    close_env(example_env)
        return LearnactResult(
            library=str(out / RUN_LIBRARY),
            selected=selected,
            score=learner_run.state.best_score,
            rounds=len(learner_run.state.rounds),
        )


def learns_by_type(config: LearnactRunConfig) -> bool:
    """Whether ``config`` learns one library per task type: its family's profile says so and its training tasks
    have several types.

    :raises LearnactError: when the environment cannot be opened.
    """
    if not env_profile(config.run.env.name).learn_by_type:
        return False
    return len(set(_types_of(config).values())) > 1


def _types_of(config: LearnactRunConfig) -> dict[str, str]:
    types = {t.id: t.type for t in make_env(config.run.env).tasks()}
    return {task: types[task] for task in config.train}


def learn_by_type(config: LearnactRunConfig, out: Path, services: LearningServices) -> dict[str, LearnactResult]:
    """Learn one library per task type of ``config``'s training tasks, as the paper does for ALFWorld: each type
    is a learning run of its own (its training tasks, its demonstration, its library) in ``<out>/types/<type>/``,
    under the whole run's identity in ``out``; rerun, each resumes where it stopped.

    :raises RunDirBusy: when another process holds ``out`` or a type's folder.
    :raises RunDirError: when ``out`` holds another run, a task type cannot name a folder, or a folder cannot
        be read or written.
    :raises LibraryError: when a library cannot be written.
    :raises LLMError: when the learner model gives no answer (rerunning retries).
    :raises SandboxUnavailable: when the sandbox cannot start.
    """
    with RunDir(out, RunKind.learnact).opened(config):
        by_type: dict[str, list[str]] = {}
        for task, task_type in _types_of(config).items():
            by_type.setdefault(task_type, []).append(task)
        results: dict[str, LearnactResult] = {}
        for task_type, train in by_type.items():
            if not SAFE_TYPE.fullmatch(task_type) or task_type.strip(".") == "":
                raise RunDirError(out, f"the task type {task_type!r} cannot name a folder to learn its library in")
            folder = out / BY_TYPE / task_type
            try:
                make_folders(out, folder)  # a planted link on the way is refused, not followed
            except OSError as exc:
                raise describe_os_error(exc, folder, "create") from None
            services.progress(f"{task_type}: learning on {len(train)} training task{'s' * (len(train) != 1)}")
            run = config.run.model_copy(update={"trained_on": tuple(train)})
            one = config.model_copy(update={"train": tuple(train), "run": run})
            results[task_type] = run_learnact(one, folder, services)
        return results


def learned_by_type(path: Path) -> dict[str, Path] | None:
    """The learning run of each task type in ``path``, a run that learned by type (None when it is not one)."""
    folder = path / BY_TYPE
    if not folder.is_dir() or folder.is_symlink():
        return None
    return {sub.name: sub for sub in sorted(folder.iterdir()) if sub.is_dir() and not sub.is_symlink()}


def learnact_run_config(
    run: RunSettings,
    split: Split,
    learnact: LearnactConfig | None = None,
    learner: ModelSettings | None = None,
    learner_temperature: float | None = None,
) -> LearnactRunConfig:
    """The run's config: the agent ``run`` (its model scores the candidates, each episode at most its
    ``max_steps``), trained on the training tasks of ``split``; the learner's settings (the domain's defaults
    when not given); the learner model (the agent's when not given, sampling at ``learner_temperature``, by
    default LEARNER_TEMPERATURE, or LOCAL_LEARNER_TEMPERATURE for the local model, with room for several
    functions; fixes at 0).

    :raises LearnactError: for a run without a model.
    """
    if run.model is None:
        raise LearnactError("LearnAct learns with a model: the run has none", "give the run a ModelSettings")
    model = learner or run.model
    if learner_temperature is None:
        learner_temperature = LOCAL_LEARNER_TEMPERATURE if model.model == LOCAL else LEARNER_TEMPERATURE
    learner_settings = model.model_copy(update={"temperature": learner_temperature, "max_tokens": LEARNER_MAX_TOKENS})
    return LearnactRunConfig(
        run=run.model_copy(update={"trained_on": split.train}),
        learner=learner_settings,
        learnact=learnact or LearnactConfig.for_env(run.env.name),
        seed=split.seed,
        train=split.train,
    )


# --- using a learned library -------------------------------------------------------------------------------


def learned_library(path: Path, interim: bool = False) -> tuple[Library, tuple[str, ...]]:
    """`learnact eval --library DIR`: the library in DIR (a library folder, or the run folder holding one) and
    the training tasks of the run that learned it (empty when DIR is not inside such a run). A finished
    learning run that kept no action gives its library all the same (its agent has the primitives only:
    that is what LearnAct achieved, and an evaluation of it is a result). The selection of a run that has not
    finished is the best set so far, refused unless ``interim`` asks for it.

    :raises LibraryError: when DIR holds no readable library, or its learning has not finished (and not
        ``interim``).
    :raises RunDirError: when the learning run's state cannot be read.
    """
    library = Library.open_existing(path)
    folder = library.path
    progress = library.learning()
    if progress is None:  # a library that does not say: its run's state, else a selection someone made
        state = _read_state(folder.parent / LEARN_STATE)
        if state is not None:
            finished = state.selected is not None
        else:
            finished = bool(library.selected()) or library.score() is not None
        where = "learning not finished"
    else:
        finished, where = progress.finished, progress.describe()
    if not finished and not (interim and library.selected()):
        raise LibraryError(
            folder,
            f"the library {folder} is not a result yet: {where}",
            "finish the learning run (rerun the same `learnact learn` command), or give {interim} to evaluate the"
            " set selected so far",
        )
    train: tuple[str, ...] = ()
    config_path = folder.parent / CONFIG
    try:
        run_config = read_model(config_path, LearnactRunConfig, MAX_STATE_BYTES, root=folder.parent, what="a config")
    except RunDirError as exc:
        log.warning("could not read the training tasks: %s", exc)
    else:
        train = run_config.train if run_config is not None else ()
    return library, train
