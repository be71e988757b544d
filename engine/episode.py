"""One episode: environment + task + policy + sandbox session → EpisodeRecord.

Every step, the expert's too, is code (``Pickup("b1")``) that is statically checked and executed in the
sandbox; its primitive calls are proxied to the environment, whose state lives only here on the host.
Success and progress are read from the environment, never from what the sandbox reports.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from learnact.actions.errors import LearnactError
from learnact.engine.records import MAX_ERROR_CHARS, EpisodeRecord, EpisodeSpec, StepRecord
from learnact.envs import Environment, StepOutcome, make_env
from learnact.sandbox import ExecutionResult, ExecutionStatus, Sandbox


def call_code(name: str, args: list[Any]) -> str:
    """A primitive call written as one line of agent code."""
    return f"{name}({', '.join(repr(a) for a in args)})"


class ExpertPolicy:
    """Replays the environment's expert, one primitive call per step, as code."""

    def __init__(self, env: Environment) -> None:
        self._calls: Iterator[tuple[str, list[Any]]] = env.expert_calls()

    def next_code(self, observation: str) -> str | None:
        call = next(self._calls, None)
        return None if call is None else call_code(*call)


class OutcomeTracker:
    """The handler the sandbox proxies primitive calls to; remembers what the environment said."""

    def __init__(self, env: Environment) -> None:
        self._env = env
        self.last: StepOutcome | None = None
        self.progress = 0.0

    def __call__(self, name: str, args: list[Any]) -> str:
        outcome = self._env.call(name, args)
        self.last = outcome
        self.progress = max(self.progress, outcome.progress)
        return outcome.observation

    @property
    def done(self) -> bool:
        return self.last is not None and self.last.done

    @property
    def success(self) -> bool:
        return self.last is not None and self.last.success


def observation_of(result: ExecutionResult) -> str:
    """What the agent sees after a step: the environment's answers, or what went wrong."""
    seen = [c.observation for c in result.calls]
    if result.status is ExecutionStatus.rejected:
        seen.append("The code was rejected: " + " ".join(f"line {f.line}: {f.message}" for f in result.findings))
    elif result.error is not None:
        seen.append(f"{result.error.type}: {result.error.message}")
    elif result.status is not ExecutionStatus.ok:
        seen.append(f"The code stopped: {result.status.value}.")
    elif not seen:
        seen.append(result.stdout.strip() or "Nothing was done.")
    return "\n".join(seen)


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
) -> EpisodeRecord:
    """Run one episode. ``env`` and ``sandbox`` may be passed in to reuse them across episodes;
    ``should_stop`` is asked before every step.

    An exception while the episode runs (the planner finds no plan or times out, the environment or
    the sandbox fails, an unknown task) does not propagate: the episode is recorded with
    ``status="error"`` and the reason, with the steps made until then.

    :raises EpisodeInterrupted: when ``should_stop`` says so (also when the stop made something fail).
        BaseExceptions such as KeyboardInterrupt propagate too.
    """
    started = time.perf_counter()
    steps: list[StepRecord] = []
    task_type = "unknown"
    tracker: OutcomeTracker | None = None
    settings = spec.run
    env_name = env.name if env is not None else settings.env.name
    own_sandbox = False
    try:
        env = env or make_env(settings.env)
        env_name = env.name
        task_type = next((t.type for t in env.tasks() if t.id == spec.task), task_type)
        own_sandbox = sandbox is None
        sandbox = sandbox or Sandbox(settings.sandbox)
        reset = env.reset(spec.task)
        policy = ExpertPolicy(env)
        tracker = OutcomeTracker(env)
        observation = f"{reset.observation}\n{reset.goal}"
        with sandbox.session(env.primitives(), tracker) as session:
            for index in range(settings.max_steps):
                if should_stop():
                    raise EpisodeInterrupted(spec.task)
                code = policy.next_code(observation)
                if code is None:
                    break
                step_started = time.perf_counter()
                result = session.execute(code)
                observation = observation_of(result)
                steps.append(
                    StepRecord(
                        index=index,
                        code=code,
                        result=result,
                        observation=observation,
                        duration_s=time.perf_counter() - step_started,
                    )
                )
                if tracker.done:
                    break
        error = None
    except EpisodeInterrupted:
        raise
    except Exception as exc:
        if should_stop():  # e.g. the planner killed by the same Ctrl-C: not the episode's fault
            raise EpisodeInterrupted(spec.task) from exc
        error = error_text(exc)
    finally:
        if own_sandbox and sandbox is not None:
            sandbox.close()
    return EpisodeRecord(
        task=spec.task,
        type=task_type,
        env=env_name,
        method=settings.method,
        status="finished" if error is None else "error",
        error=error,
        success=error is None and tracker is not None and tracker.success,
        progress=tracker.progress if tracker is not None else 0.0,
        steps=steps,
        duration_s=time.perf_counter() - started,
    )
