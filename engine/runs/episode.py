"""One episode: environment + task + policy + sandbox session → EpisodeRecord.

Every step, the expert's too, is code (``Pickup("b1")``) that is statically checked and executed in the
sandbox; its primitive calls are proxied to the environment, whose state lives only here on the host.
Success and progress are read from the environment, never from what the sandbox reports.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from learnact.actions.errors import LearnactError
from learnact.actions.models import ActionSet, CodeKind
from learnact.engine.agents import (
    THINK_ANSWER,
    ExpertPolicy,
    NoCode,
    PolicyContext,
    Program,
    Think,
    call_code,
    make_policy,
)
from learnact.engine.agents.policy import Decision, Policy
from learnact.engine.agents.prompts import fill
from learnact.engine.llm import Backbone, Ledger, LLMError, RecordingBackbone
from learnact.engine.records import (
    MAX_ERROR_CHARS,
    EndReason,
    EpisodeRecord,
    EpisodeSpec,
    EpisodeStatus,
    LearnedUse,
    StepRecord,
    TokenUsage,
)
from learnact.envs import Environment, StepOutcome, counted_refusals, env_profile, make_env, step_worked
from learnact.learner.answers import called_names
from learnact.sandbox import ExecutionResult, ExecutionStatus, Sandbox, Session

# ExpertPolicy, call_code: kept where they were
__all__ = ["ActionsNotLoaded", "ExpertPolicy", "call_code", "run_episode"]
REPEATED_FAILURES = 5  # the same failing action this many times in a row ends the episode
# A weak model copies its last line: from the second failure in a row of the same line, its observation says that
# the line fails again if written again (the template `repeat_warning`).


class OutcomeTracker:
    """The handler the sandbox proxies primitive calls to; remembers what the environment said."""

    def __init__(self, env: Environment) -> None:
        self._env = env
        self.last: StepOutcome | None = None
        self.progress = 0.0
        self.verdicts: list[bool] = []  # the environment's verdict on each call, in order (all of them: a step's
        # result keeps only its first calls)

    def __call__(self, name: str, args: list[Any]) -> StepOutcome:
        outcome = self._env.call(name, args)
        self.last = outcome
        self.verdicts.append(outcome.valid)
        self.progress = max(self.progress, outcome.progress)
        return outcome  # its observation for the program, its verdict for the result's call record

    @property
    def done(self) -> bool:
        return self.last is not None and self.last.done

    @property
    def success(self) -> bool:
        return self.last is not None and self.last.success


NOTHING_DONE = "Nothing was done: the code called no action."
# The invalid calls of one step an agent is shown in an environment of whole-state observations: a learned call
# looping over a 20-item list made 38 invalid calls, 2,000 tokens of messages in every later prompt (measured on
# the local model: its prompts grew from 1,300 to 9,600 tokens in five steps, 85 s a step). The first says what
# went wrong and the rest mostly follow from it: three added about 150 tokens to each failing step of the main
# job, which the local model reads at about 70 tokens a second, in that step's prompt and every later one.
MAX_INVALID_SHOWN = 1
# The observations of one step an agent is shown in an environment whose observations are not states (ALFWorld's
# "You arrive at cabinet 1. On the cabinet 1, you see ..."): a learned call that searches every receptacle makes
# thirty calls; what it ended with is in its last ones, and thirty would fill every later prompt.
MAX_OBSERVATIONS_SHOWN = 8


def observation_of(result: ExecutionResult, final_state: bool = False) -> str:
    """What the agent sees after a step: the environment's answers, or what went wrong. With ``final_state``
    (an environment whose every observation is the whole state, :attr:`EnvProfile.final_state_observations`),
    a step of several calls shows the state the last valid call left, then the first :data:`MAX_INVALID_SHOWN`
    invalid call(s) with the message and how many more there were: the states in between say nothing the last
    does not, and would fill the agent's context; the invalid calls are those of
    :func:`~learnact.envs.counted_refusals` (calls refused before the step first acted changed nothing).
    Otherwise it shows the last :data:`MAX_OBSERVATIONS_SHOWN` observations, after how many earlier ones are not
    shown."""
    if final_state and len(result.calls) > 1:
        last_valid = [c.observation for c in result.calls if c.valid][-1:]
        invalid = [result.calls[index] for index in counted_refusals([c.valid for c in result.calls])]
        seen = last_valid + [f"{call_code(c.name, c.args)}: {c.observation}" for c in invalid[:MAX_INVALID_SHOWN]]
        if len(invalid) > MAX_INVALID_SHOWN:
            more = len(invalid) - MAX_INVALID_SHOWN
            seen.append(f"({more} more call{'s were' if more > 1 else ' was'} not valid.)")
    else:
        seen = [c.observation for c in result.calls[-MAX_OBSERVATIONS_SHOWN:]]
        if len(result.calls) > MAX_OBSERVATIONS_SHOWN:
            earlier = len(result.calls) - MAX_OBSERVATIONS_SHOWN
            seen.insert(0, f"({earlier} earlier observation{'s are' if earlier > 1 else ' is'} not shown.)")
    if result.status is ExecutionStatus.rejected:
        seen.append("The code was rejected: " + " ".join(f"line {f.line}: {f.message}" for f in result.findings))
    elif result.error is not None:
        seen.append(f"{result.error.type}: {result.error.message}")
    elif result.status is not ExecutionStatus.ok:
        seen.append(f"The code stopped: {result.status.value}.")
    elif not seen:
        seen.append(result.stdout.strip() or NOTHING_DONE)
    return "\n".join(seen)


class ActionsNotLoaded(LearnactError):
    """The learned actions of a run could not be loaded into an episode's sandbox: ``result`` says why (the
    static check's findings, or the error the module raised when it was loaded)."""

    def __init__(self, result: ExecutionResult) -> None:
        self.result = result
        if result.status is ExecutionStatus.rejected:
            reason = "the static check rejected them:\n" + "\n".join(f.render("actions") for f in result.findings)
        elif result.error is not None:
            reason = f"loading them ended with {result.error.type}: {result.error.message}"
            reason += f"\n{result.error.traceback}" if result.error.traceback else ""
        else:
            reason = f"loading them ended with the status {result.status.value}"
        super().__init__(f"the learned actions could not be loaded: {reason}", "fix or drop the failing action")


class EpisodeInterrupted(LearnactError):
    """The run was asked to stop during the episode of ``task``; the unfinished episode is not recorded."""

    def __init__(self, task: str) -> None:
        self.task = task
        super().__init__(f"the episode of task '{task}' was stopped")


def error_text(exc: BaseException) -> str:
    """One line naming what ended an episode: the exception's type and message, capped."""
    message = str(exc)
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def run_episode(
    spec: EpisodeSpec,
    env: Environment | None = None,
    sandbox: Sandbox | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    backbone: Backbone | None = None,
) -> EpisodeRecord:
    """Run one episode. ``env`` and ``sandbox`` may be passed in to reuse them across episodes;
    ``should_stop`` is asked before every step; ``backbone`` is the language model of a model method
    (its calls are counted in the record's ``usage``; a :class:`RecordingBackbone` also records them).

    The run's learned actions for the task's type (``spec.run.actions_for``) are loaded into the session before
    the first step; a module the check rejects or that fails to load ends the episode as an ``error`` naming the
    findings or the traceback.

    The steps are :meth:`_Playing.play`'s. A backbone that gives no answer ends the episode with
    :attr:`EpisodeStatus.llm_error`.

    An exception while the episode runs (the planner finds no plan or times out, the environment or
    the sandbox fails, an unknown task) does not propagate: the episode is recorded with
    :attr:`EpisodeStatus.error` and the reason, with the steps made until then.

    :raises EpisodeInterrupted: when ``should_stop`` says so (also when the stop made something fail).
        BaseExceptions such as KeyboardInterrupt propagate too.
    """
    started = time.perf_counter()
    steps: list[StepRecord] = []
    task_type = "unknown"
    tracker: OutcomeTracker | None = None
    settings = spec.run
    env_name = env.name if env is not None else settings.env.name
    own_sandbox, status, ended = False, EpisodeStatus.finished, None
    recording = _recording(backbone, spec.key)
    try:
        env = env or make_env(settings.env)
        env_name = env.name
        task_type = next((t.type for t in env.tasks() if t.id == spec.task), task_type)
        own_sandbox = sandbox is None
        sandbox = sandbox or Sandbox(settings.sandbox)
        reset = env.reset(spec.task)
        actions = settings.actions_for(task_type)
        context = PolicyContext(
            env, task_type, reset, recording, settings.model, seed=spec.seed, notes=settings.notes, actions=actions
        )
        policy = make_policy(settings.method, context)
        tracker = OutcomeTracker(env)
        observation = f"{reset.observation}\n{reset.goal}"
        final_state = env_profile(env_name).final_state_observations
        with sandbox.session(env.primitives(), tracker) as session:
            _load(session, actions)
            ended = _Playing(policy, session, tracker, final_state, steps).play(observation, spec, should_stop)
        error = None
    except EpisodeInterrupted:
        raise
    except Exception as exc:
        if should_stop():  # e.g. the planner or the model call ended by the same Ctrl-C: not the episode's fault
            raise EpisodeInterrupted(spec.task) from exc
        error, status, ended = _failure(exc)
    finally:
        if own_sandbox and sandbox is not None:
            sandbox.close()
    return EpisodeRecord(
        task=spec.task,
        seed=spec.seed,
        type=task_type,
        env=env_name,
        method=settings.method,
        status=status,
        error=error,
        success=error is None and tracker is not None and tracker.success,
        progress=tracker.progress if tracker is not None else 0.0,
        steps=steps,
        duration_s=time.perf_counter() - started,
        ended=ended,
        usage=_usage(recording),
        learned=learned_use(steps, settings.actions_for(task_type)),
    )


def _failure(exc: Exception) -> tuple[str, EpisodeStatus, EndReason]:
    """How ``exc`` ended an episode: the model gave no answer (``llm_error``), or anything else (``error``)."""
    if isinstance(exc, LLMError):
        return error_text(exc), EpisodeStatus.llm_error, EndReason.llm_error
    return error_text(exc), EpisodeStatus.error, EndReason.error


def _load(session: Session, actions: ActionSet | None) -> None:
    """Load the learned ``actions`` into the session (none: nothing).

    :raises ActionsNotLoaded: when the check rejects them or they fail to load.
    """
    if actions is not None and actions.actions:
        loaded = session.load_actions(actions.module)
        if not loaded.ok:
            raise ActionsNotLoaded(loaded)


def _recording(backbone: Backbone | None, episode: str) -> RecordingBackbone | None:
    """``backbone`` recording its calls under ``episode`` (into its own ledger when it records nowhere yet)."""
    if backbone is None:
        return None
    recording = backbone if isinstance(backbone, RecordingBackbone) else RecordingBackbone(backbone, Ledger())
    return recording.for_episode(episode)


@dataclass
class _Playing:
    """An episode in play: the ``policy`` asked for each step, the ``session`` its code runs in, the ``tracker`` of
    what the environment did, how a step's observation is built (``final_state``: :func:`observation_of`), and
    the ``steps`` made, each appended as it ends (kept by the caller when the episode breaks)."""

    policy: Policy
    session: Session
    tracker: OutcomeTracker
    final_state: bool
    steps: list[StepRecord]

    def play(self, observation: str, spec: EpisodeSpec, should_stop: Callable[[], bool]) -> EndReason:
        """Play ``spec``'s steps from the first ``observation``; why it stopped. Each step the policy proposes a
        line of code, which is checked and run in the sandbox (code_as_policy: one whole program, checked as a
        program and run once, its only step), or a thought (answered ``OK.``), or an answer without code (its
        message is the next observation). From the second time in a row that the same step fails, its observation
        says that written again it fails again; REPEATED_FAILURES times in a row end the episode
        (:attr:`EndReason.repeated_failure`).

        :raises EpisodeInterrupted: when ``should_stop`` says so before a step.
        """
        failing: tuple[str, int] | None = None  # the last failing step and how often in a row
        for index in range(spec.run.max_steps):
            if should_stop():
                raise EpisodeInterrupted(spec.task)
            step_started = time.perf_counter()
            decision = self.policy.decide(observation)
            if decision is None:
                return EndReason.policy_end
            code, thought, result, observation, failed_as = self._take_step(decision)
            repeated = False
            if failed_as is not None:
                times = failing[1] + 1 if failing is not None and failing[0] == failed_as else 1
                failing = (failed_as, times)
                if times >= REPEATED_FAILURES:
                    observation += "\n" + fill("repeated", count=times).strip()
                    repeated = True
                elif times >= 2:
                    observation += "\n" + fill("repeat_warning", count=times).strip()
            elif not isinstance(decision, Think):
                failing = None
            self.steps.append(
                StepRecord(
                    index=index,
                    code=code,
                    result=result,
                    observation=observation,
                    duration_s=time.perf_counter() - step_started,
                    thought=thought,
                    answer=decision.answer,
                )
            )
            if self.tracker.done:
                return EndReason.done
            if repeated:
                return EndReason.repeated_failure
        return EndReason.max_steps

    def _take_step(self, decision: Decision) -> tuple[str, str | None, ExecutionResult | None, str, str | None]:
        """Carry ``decision`` out: its code, thought, result and observation, and what failed (None: nothing)."""
        if isinstance(decision, Think):
            return "", decision.thought, None, THINK_ANSWER, None
        if isinstance(decision, NoCode):
            return "", None, None, decision.message, "no code: " + decision.answer.strip()
        tracker = self.tracker
        before = len(tracker.verdicts)
        kind = CodeKind.program if isinstance(decision, Program) else CodeKind.agent_snippet
        result = self.session.execute(decision.code, kind=kind)
        failed = not result.ok or result.did_nothing or not step_worked(tracker.verdicts[before:])
        observation = observation_of(result, self.final_state)
        return decision.code, None, result, observation, decision.code if failed else None


def learned_use(steps: list[StepRecord], actions: ActionSet | None) -> LearnedUse | None:
    """How the steps used the learned ``actions`` (None without any): a step called one when its code does; it
    acted when the environment found at least one primitive call inside valid; it worked when the code ran
    without an error and its primitive calls did what they were written for (:func:`~learnact.envs.step_worked`:
    one valid at least, none refused after the first valid one; a call that did nothing did not work)."""
    if actions is None or not actions.actions:
        return None
    names = [action.name for action in actions.actions]
    ran = [(step.code, step.result) for step in steps if step.result is not None]
    learned = [result for code, result in ran if called_names(code, names)]
    worked = [
        result
        for result in learned
        if result.ok and not result.did_nothing and step_worked([c.valid for c in result.calls])
    ]
    acted = [result for result in learned if any(call.valid for call in result.calls)]
    return LearnedUse(code_steps=len(ran), learned_steps=len(learned), learned_ok=len(worked), learned_acted=len(acted))


def _usage(recording: RecordingBackbone | None) -> TokenUsage | None:
    if recording is None:
        return None
    totals = recording.ledger.episode_totals(recording.episode)
    return TokenUsage.model_validate(totals.model_dump(include=set(TokenUsage.model_fields)))
