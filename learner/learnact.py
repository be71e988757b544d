"""LearnAct's learner: the model writes Python actions over the primitives, the sandbox runs them, and what
goes wrong drives the model to repair them (Create → Validate → Score → Optimise, as in the paper).

The learner holds the algorithm only. What it needs from above is passed in, so that this room never
imports the engine: the prompts (:class:`PromptBook`), one way to ask the model (:data:`Ask`, which names
each call so it can be found in the run's call log), and one way to run the act agent with a candidate set
on the training tasks (:data:`RunTasks`). Reading answers (:mod:`.answers`), validation in the sandbox
(:mod:`.validation`) and scoring (:mod:`.scoring`) each have their own module; this one is the algorithm.

Every version written goes to the :class:`Library` with its origin, the
call that wrote it and the feedback behind it. The learner's progress is a :class:`LearnState` handed to
``save`` after every step, and each library write is idempotent (an identical version already written by
the same call is reused), so a killed run resumes where it stopped without asking the model again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, get_args

from pydantic import BaseModel, ConfigDict, Field

from learnact.actions.library import (
    ActionVersion,
    CandidateScore,
    Feedback,
    LearningProgress,
    Library,
    Origin,
    RoundRecord,
    VersionDraft,
)
from learnact.actions.models import ActionSet, UsageDemonstration, UsagePlacement
from learnact.actions.transcript import ChatMessage
from learnact.envs import env_profile
from learnact.learner.answers import (
    MAX_ANSWER_CHARS,
    ParsedAnswer,
    Problem,
    cut,
    parse_actions,
    parse_improvement,
)
from learnact.learner.scoring import FailureCase, HistoryView, Scored, ScoreTerm, Trajectory, score_trajectories
from learnact.learner.validation import SandboxValidator

log = logging.getLogger(__name__)

MAX_NOTE_CHARS = 600

Style = Literal["compose", "decompose"]
# where the agent reads a set's usage demonstration: a fixed placement, or the one the training tasks choose
UsagePlacementOption = Literal[UsagePlacement, "chosen"]  # typing flattens it to one Literal


class LearnactConfig(BaseModel):
    """The learner's settings. The defaults are the paper's for robotic planning (free composition, score
    ``step_correction + call_ratio + success``, the last step as history); a family's profile may change them
    (ALFWorld's: decomposition of the demonstrated plan, ``call_ratio + success``, the whole trajectory),
    which :meth:`for_env` applies.

    :raises pydantic.ValidationError: for an unknown field or a value out of range.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    style: Style = "compose"
    samples: int = Field(4, ge=1, le=32, description="candidate sets created, and new ones per round")
    rounds: int = Field(2, ge=0, le=20, description="optimisation rounds")
    fix_tries: int = Field(3, ge=0, le=10, description="answers to fix after a finding or traceback")
    score_terms: tuple[ScoreTerm, ...] = ("step_correction", "call_ratio", "success")
    history: HistoryView = "last"
    max_actions: int = Field(8, ge=1, le=32, description="functions kept from one answer")
    drop_unused: bool = Field(
        False, description="drop the actions of the best set never called while scoring (the paper keeps it whole)"
    )
    usage_placement: UsagePlacementOption = Field(
        "chosen",
        description="where the agent reads a set's usage demonstration: first (before the primitive one, as the"
        " paper orders them), last (after it), alone (instead of it), or chosen (the first best set with a usage"
        " demonstration scored each way on the training tasks, before the optimisation rounds, which then score so:"
        " the highest score kept, then the most progress, a tie keeping the earlier of first, last, alone)",
    )

    @classmethod
    def for_env(cls, env_name: str, **overrides: Any) -> LearnactConfig:
        """The defaults of ``env_name``'s family (its profile's ``learnact``) with ``overrides`` (None values
        ignored).

        :raises pydantic.ValidationError: when the profile or an override gives a field that does not fit.
        :raises UnknownEnvironment: for a name that is not an environment.
        """
        defaults: dict[str, Any] = dict(env_profile(env_name).learnact)
        defaults.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**defaults)


class PromptBook(Protocol):
    """The learner's prompts (text templates live with the engine's other prompts)."""

    def create(self, sample: int) -> list[ChatMessage]:
        """The Create request of ``sample``: the primitive API, one demonstration, what to write, and which kind
        of step to look for first (samples differ by it, not by temperature alone)."""

    def fix(self, problems: str) -> str:
        """The user message sending ``problems`` (findings, tracebacks) back: fix and rewrite the whole answer."""

    def optimise(self, case: FailureCase, actions_code: str, sample: int) -> list[ChatMessage]:
        """The Optimise request of ``sample`` for ``case``, showing the whole current set ``actions_code``, and
        which kind of answer to give (the model's choice, a Plan, an Update: samples differ by it, not by
        temperature alone; a small model's samples at a low temperature were one answer four times)."""


@dataclass(frozen=True)
class AnswerForm:
    """The form an answer must have, which the asker may enforce (a grammar the model samples under): free text
    (the default), Python function definitions and nothing else (create and fix), or one call per line of one
    of ``calls``, at most ``max_lines`` lines (a usage demonstration)."""

    definitions: bool = False
    calls: tuple[str, ...] = ()
    max_lines: int = 0


FREE_TEXT = AnswerForm()
DEFINITIONS = AnswerForm(definitions=True)

# Ask the learner model: (call id, messages, sample, fixing, form) -> the answer's text. The call id names the
# call in the run's call log; ``fixing`` marks an answer to a problem found in the previous one, which is asked
# for without sampling (temperature 0): a fix should follow the feedback.
Ask = Callable[[str, Sequence[ChatMessage], int, bool, AnswerForm], str]


RunTasks = Callable[[ActionSet, str], list[Trajectory]]
"""Run the agent with a set on the training tasks: (actions, the scoring's name, a relative folder such as
``round-0/candidate-1``) -> one trajectory per training task."""
Demonstrate = Callable[[ActionSet, str], UsageDemonstration | None]
"""A set at work on the demonstration's task, grounded in the sandbox (None: no answer reached its goal); the
string is the call id of its first request (its fixes: ``<id>-fix-N``)."""


@dataclass(frozen=True)
class LearnerPorts:
    """What the learner is handed from above (it imports no engine): its ``prompts``, how to ``ask`` the model,
    how to ``run_tasks`` (score a candidate set), how to ``demonstrate`` a set at work, where its state is
    ``save``d after every step and where ``progress`` lines are told."""

    prompts: PromptBook
    ask: Ask
    run_tasks: RunTasks
    demonstrate: Demonstrate = lambda actions, call_id: None
    save: Callable[[LearnState], None] = lambda state: None
    progress: Callable[[str], None] = lambda line: None


@dataclass(frozen=True)
class _Writing:
    """Where the versions written from one request come from: their ``origin`` (a fix's is validated_fix), the
    ``round``, the versions they replace by name (``parents``) and the ``feedback`` that asked for them."""

    origin: Origin
    round: int
    parents: Mapping[str, int] = field(default_factory=dict)
    feedback: Feedback | None = None


class LearnState(BaseModel):
    """Where a learning run stands; saved after every step so a rerun continues from there."""

    model_config = ConfigDict(extra="forbid")

    created: dict[int, dict[str, int]] = Field(default_factory=dict)  # Create sample -> its valid actions
    candidates: dict[int, list[dict[str, int]]] = Field(default_factory=dict)  # round -> candidate sets
    optimised: dict[str, dict[str, int] | None] = Field(default_factory=dict)  # "round/sample" -> a new set
    scored: dict[str, Scored] = Field(default_factory=dict)  # "round/candidate" -> its score
    rounds: list[RoundRecord] = Field(default_factory=list)
    best: dict[str, int] = Field(default_factory=dict)  # the set kept so far
    best_score: float | None = None
    best_key: str | None = None  # the scoring ("round/candidate") whose failure the next round works on
    selected: dict[str, int] | None = None  # the final set, once learning finished
    # sha256 of a set's code -> its usage demonstration (None: none reached the goal), asked once per code
    usages: dict[str, UsageDemonstration | None] = Field(default_factory=dict)
    # where the agent reads the usage demonstration (option ``chosen``), chosen once, on the first best set that
    # has one; every later scoring and the test-time agent read it there
    placement: UsagePlacement | None = None


def _key(round_: int, index: int) -> str:
    return f"{round_}/{index}"


# --- the learner ------------------------------------------------------------------------------------


class LearnactLearner:
    """Create, validate, score and optimise candidate action sets; every version goes to ``library``."""

    def __init__(
        self,
        config: LearnactConfig,
        library: Library,
        validator: SandboxValidator,
        ports: LearnerPorts,
        env_name: str,
        state: LearnState | None = None,
    ) -> None:
        self.config, self.library, self.validator, self.env_name = config, library, validator, env_name
        self.prompts, self.ask, self.run_tasks, self.demonstrate = (
            ports.prompts,
            ports.ask,
            ports.run_tasks,
            ports.demonstrate,
        )
        self.save, self.progress = ports.save, ports.progress
        self.state = state or LearnState()
        self.primitive_names = [p.name for p in validator.primitives]

    # ---- the whole run -------------------------------------------------------------------------------

    def run(self) -> dict[str, int]:
        """Learn (continuing from ``state``); the selected set, also selected in the library.

        :raises LLMError: from ``ask`` or ``run_tasks`` when the model gives no answer.
        :raises LibraryError: when the library cannot be written.
        :raises SandboxUnavailable: when the sandbox cannot start.
        """
        state = self.state
        if state.selected is not None:
            return state.selected
        for sample in range(self.config.samples):
            if sample not in state.created:
                self.progress(f"create: sample {sample + 1} of {self.config.samples}")
                state.created[sample] = self._create(sample)
                self.save(state)
        if 0 not in state.candidates:
            state.candidates[0] = self._distinct([c for _, c in sorted(state.created.items()) if c])
            self.save(state)
        if not state.candidates[0]:  # a result too (a weak model's): learning ends with no action kept
            self.progress(f"none of the {self.config.samples} candidate action sets passed validation")
            self.library.select({}, None, self.env_name, self._progress(state, finished=True))
            state.selected = {}
            self.save(state)
            return state.selected
        round_ = max(len(state.rounds) - 1, 0)
        while True:
            if len(state.rounds) <= round_:
                self._score_round(round_)
            self._choose_placement(state.best)
            if round_ >= self.config.rounds:
                break
            best = state.scored[state.best_key] if state.best_key else None
            failure = best.failure if best else None
            if failure is None:
                called = best is not None and any(best.calls.values())
                why = "no learned-action call failed" if called else "the best set's actions were never called"
                self.progress(f"round {round_}: {why}, so there is nothing to optimise; stopping early")
                break
            if round_ + 1 not in state.candidates:
                state.candidates[round_ + 1] = self._optimise(round_ + 1, failure)
                self.save(state)
            round_ += 1
        return self._finish()

    # ---- Create and Validate -------------------------------------------------------------------------

    def _create(self, sample: int) -> dict[str, int]:
        messages = list(self.prompts.create(sample))
        return self._write_validated(f"create/s{sample}", messages, sample, _Writing(Origin.created, 0))

    def _write_validated(
        self,
        call_base: str,
        messages: list[ChatMessage],
        sample: int,
        writing: _Writing,
        first_answer: str | None = None,
    ) -> dict[str, int]:
        """Ask (or take ``first_answer``), validate, send the problems back up to ``fix_tries`` times (an
        answer whose only problems need no fix, duplicates, is not sent back: they are dropped); record
        every attempt's functions as versions; the valid functions of the last attempt by name. A fix that
        repeats the answer it fixes ends the tries: the next request would be the last one again, and a fix is
        asked at temperature 0."""
        attempts: list[tuple[str, ParsedAnswer]] = []
        asked = messages
        previous = None
        for attempt in range(self.config.fix_tries + 1):
            call_id = f"{call_base}/t{attempt}"
            if attempt == 0 and first_answer is not None:
                answer = first_answer
            else:
                answer = self.ask(call_id, asked, sample, attempt > 0, DEFINITIONS)
            if answer == previous:
                self.progress(f"{call_base}: the fix repeats the answer it was asked to fix; no more asked")
                break
            previous = answer
            parsed = parse_actions(answer, self.primitive_names, self.config.max_actions)
            if "" not in parsed.problems:
                parsed.problems = self.validator.problems(parsed.actions, parsed.problems)
            attempts.append((call_id, parsed))
            if not any(p.needs_fix for p in parsed.problems.values()):
                break
            if attempt < self.config.fix_tries:
                shown = _problems_text(parsed.problems)
                self.progress(f"{call_base}: {len(parsed.problems)} problem(s) sent back to the model")
                # Rebuilt from the first prompt, the last answer and its problems: earlier answers are not
                # appended, so a small model does not copy its own mistake over and over.
                asked = [
                    *messages,
                    ChatMessage(role="assistant", content=answer[:MAX_ANSWER_CHARS]),
                    ChatMessage(role="user", content=self.prompts.fix(shown)),
                ]
        return self._record_attempts(attempts, writing)

    def _record_attempts(self, attempts: list[tuple[str, ParsedAnswer]], writing: _Writing) -> dict[str, int]:
        """Every attempt's functions as versions (a function an attempt left unchanged only when it is dropped);
        the valid functions of the last attempt by name."""
        latest: dict[str, ActionVersion] = {}
        previous_problems: dict[str, Problem] = {}
        for index, (call_id, parsed) in enumerate(attempts):
            final = index == len(attempts) - 1
            names = [a.name for a in parsed.actions]
            for action in parsed.actions:
                before = latest.get(action.name)
                parent = before.version if before else writing.parents.get(action.name)
                if before is None and parent is not None:  # an Update that rewrote a function unchanged
                    before = latest[action.name] = self.library.get(action.name, parent)
                dropped = parsed.problems[action.name].text if final and action.name in parsed.problems else None
                if before is not None and (before.code, before.description, before.example) == (
                    action.code,
                    action.description,
                    action.example,
                ):
                    if dropped is None:
                        continue
                    why = before.feedback
                else:
                    why = writing.feedback if index == 0 else _feedback_of(previous_problems, action.name)
                origin = writing.origin if index == 0 else Origin.validated_fix
                draft = action.draft(origin, self.validator.verdict(action, names))
                latest[action.name] = self._version(
                    replace(draft, parent=parent, call_id=call_id, feedback=why, round=writing.round, dropped=dropped)
                )
            previous_problems = parsed.problems
        final = attempts[-1][1]
        kept = {a.name for a in final.actions}
        last_call = attempts[-1][0]
        for name, version in list(latest.items()):  # a function an earlier answer had and the last one left out
            if name not in kept and version.dropped is None:
                latest[name] = self._rewritten(
                    version,
                    origin=Origin.validated_fix,
                    call_id=last_call,
                    feedback=version.feedback,
                    round=writing.round,
                    dropped=f"the model's last answer ({last_call}) left {name} out (renamed or removed)",
                )
        return {a.name: latest[a.name].version for a in final.actions if a.name not in final.problems}

    def _version(self, draft: VersionDraft) -> ActionVersion:
        """A new version, or the identical one a killed run already wrote (same call, same code)."""
        compared = ("code", "notes", "origin", "parent", "call_id", "round", "dropped", "description", "example")
        for existing in self.library.versions(draft.name) if draft.name in self.library.names() else []:
            if all(getattr(existing, k) == getattr(draft, k) for k in compared):
                return existing
        return self.library.new_version(draft)

    def _rewritten(self, kept: ActionVersion, **changes: Any) -> ActionVersion:
        """A new version of ``kept`` with the same code, description, example, notes and verdict, but for
        ``changes`` (its origin, call, round and feedback at least), whose parent is ``kept``."""
        kept_fields = kept.model_dump(include={"name", "code", "description", "example", "origin", "notes"})
        same = VersionDraft(**kept_fields, parent=kept.version, verdict=tuple(kept.verdict))
        return self._version(replace(same, **changes))

    # ---- Score ------------------------------------------------------------------------------------------

    def _score_round(self, round_: int) -> None:
        state = self.state
        candidates = state.candidates[round_]
        scored: list[Scored] = []
        for index, actions in enumerate(candidates):
            key = _key(round_, index)
            if key not in state.scored:
                self.progress(f"round {round_}: scoring candidate {index + 1} of {len(candidates)}")
                state.scored[key] = self._score(round_, index, actions)
                self.save(state)
            scored.append(state.scored[key])
        best_index = max(range(len(scored)), key=lambda i: (scored[i].score.score, -i))
        best = scored[best_index]
        rolled_back = state.best_score is not None and best.score.score < state.best_score
        if rolled_back:
            self.progress(
                f"round {round_}: its best score {best.score.score:.3f} is below {state.best_score:.3f}: rolled back"
            )
            state.best = self._roll_back(state.best, round_)
        else:
            state.best, state.best_score, state.best_key = (
                dict(best.score.actions),
                best.score.score,
                _key(round_, best_index),
            )
        record = RoundRecord(
            round=round_,
            candidates=[s.score for s in scored],
            best=best_index,
            best_score=best.score.score if not rolled_back else state.best_score or 0.0,
            rolled_back=rolled_back,
        )
        self.library.record_round(record)
        state.rounds.append(record)
        self.library.select(state.best, state.best_score, self.env_name, self._progress(state, finished=False))
        self.save(state)
        self.progress(f"round {round_}: best candidate {best_index + 1}, score {record.best_score:.3f}")

    def _progress(self, state: LearnState, finished: bool) -> LearningProgress:
        return LearningProgress(finished=finished, round=max(len(state.rounds) - 1, 0), rounds=self.config.rounds)

    def _roll_back(self, best: Mapping[str, int], round_: int) -> dict[str, int]:
        restored = {}
        for name, number in best.items():
            version = self._rewritten(
                self.library.get(name, number),
                origin=Origin.rollback,
                call_id=None,
                round=round_,
                feedback=Feedback(kind="none", text=f"round {round_} scored lower than the set kept before it"),
            )
            restored[name] = version.version
        return restored

    def action_set(self, actions: Mapping[str, int]) -> ActionSet:
        """The versions ``actions`` names, as an agent gets them.

        :raises LibraryError: for a version the library does not hold.
        """
        return ActionSet(actions=tuple(self.library.get(n, v).as_learned() for n, v in actions.items()))

    def demonstrated(self, actions: ActionSet, call_id: str) -> ActionSet:
        """``actions`` with their usage demonstration, asked for (as ``call_id``) only for code not demonstrated
        before: a Plan note changes no code, and its set is shown the same demonstration.

        :raises LLMError: when the learner model gives no answer.
        :raises SandboxUnavailable: when the sandbox cannot start.
        """
        key = hashlib.sha256(actions.module.encode()).hexdigest()
        if key not in self.state.usages:
            self.state.usages[key] = self.demonstrate(actions, call_id)
            self.save(self.state)
        usage = self.state.usages[key]
        option = self.config.usage_placement
        placement = self.state.placement if option == "chosen" else option
        if usage is not None and placement is not None:
            usage = usage.model_copy(update={"placement": placement})
        return actions.model_copy(update={"usage": usage})

    def _score(self, round_: int, index: int, actions: Mapping[str, int]) -> Scored:
        # the scoring agent sees each candidate at work, as the test-time agent sees the selected set
        shown = self.demonstrated(self.action_set(actions), f"usage/r{round_}/c{index}")
        trajectories = self.run_tasks(shown, f"round-{round_}/candidate-{index}")
        scored, outcomes = score_trajectories(
            trajectories, actions, self.config.score_terms, round_, index, self.config.history
        )
        already = {(o.round, o.candidate) for o in self.library.outcomes() if o.phase == "score"}
        if (round_, index) not in already:
            self.library.record_outcomes(outcomes)
        return scored

    def _distinct(self, sets: Iterable[dict[str, int]]) -> list[dict[str, int]]:
        """``sets`` without those whose actions have the code and notes of an earlier one (the versions differ,
        the agent would see the same set: scoring it again tells nothing; four samples of a small model were often
        one answer)."""
        seen: dict[tuple, dict[str, int]] = {}
        for actions in sets:
            versions = (self.library.get(name, number) for name, number in sorted(actions.items()))
            seen.setdefault(tuple((v.name, v.code, v.notes) for v in versions), dict(actions))
        return list(seen.values())

    # ---- Optimise --------------------------------------------------------------------------------------

    def _optimise(self, round_: int, failure: FailureCase) -> list[dict[str, int]]:
        state = self.state
        best = dict(state.best)
        found: list[dict[str, int]] = [best]
        actions_code = self.action_set(best).module
        for sample in range(self.config.samples):
            key = _key(round_, sample)
            if key not in state.optimised:
                self.progress(f"round {round_}: improving {failure.name}, sample {sample + 1} of {self.config.samples}")
                state.optimised[key] = self._improve(round_, sample, failure, best, actions_code)
                self.save(state)
            if state.optimised[key] is not None:
                found.append(state.optimised[key])  # type: ignore[arg-type]
        return self._distinct(found)

    def _improve(
        self, round_: int, sample: int, failure: FailureCase, best: dict[str, int], actions_code: str
    ) -> dict[str, int] | None:
        messages = list(self.prompts.optimise(failure, actions_code, sample))
        call_base = f"r{round_}/optimise/s{sample}"
        answer = self.ask(f"{call_base}/t0", messages, sample, False, FREE_TEXT)
        improvement = parse_improvement(answer)
        if improvement is None:
            log.info("%s: the answer says neither Update nor Plan; no candidate", call_base)
            return None
        why = Feedback(
            kind="failed_call",
            text=cut(f"{failure.error}\nFailed reason: {improvement.reason}", 60_000),
            trajectory=failure.history,
        )
        if improvement.kind == "plan":
            note = cut(" ".join(improvement.content.split()), MAX_NOTE_CHARS)
            if not note:
                return None
            kept = self.library.get(failure.name, best.get(failure.name, failure.version))
            version = self._rewritten(
                kept,
                notes=(*kept.notes, note),
                origin=Origin.plan_note,
                call_id=f"{call_base}/t0",
                round=round_,
                feedback=why,
            )
            return {**best, kept.name: version.version}
        writing = _Writing(Origin.update, round_, best, why)
        updated = self._write_validated(call_base, messages, sample, writing, first_answer=improvement.content)
        return {**best, **updated} if updated else None

    # ---- the end ---------------------------------------------------------------------------------------

    def _finish(self) -> dict[str, int]:
        state = self.state
        assert state.best_key is not None
        calls = state.scored[state.best_key].calls
        tasks = state.scored[state.best_key].score.tasks
        selected: dict[str, int] = {}
        for name, number in state.best.items():
            if calls.get(name, 0) > 0 or not self.config.drop_unused:  # the best set is kept whole by default
                selected[name] = number
                continue
            kept = self.library.get(name, number)
            self._rewritten(
                kept,
                origin=kept.origin,
                call_id=kept.call_id,
                round=len(state.rounds) - 1,
                feedback=kept.feedback,
                dropped=f"never called while scoring the kept set on {tasks} training task(s)",
            )
            self.progress(f"dropped {name}: never called while scoring")
        if selected:
            self._choose_placement(selected)
        usage = self.demonstrated(self.action_set(selected), "usage/selected").usage if selected else None
        self.library.select(selected, state.best_score, self.env_name, self._progress(state, finished=True), usage)
        state.selected = selected
        self.save(state)
        return selected

    def _choose_placement(self, actions: dict[str, int]) -> None:
        """With the option ``chosen``, once: ``actions`` (the best set so far) scored on the training tasks with
        its usage demonstration placed each way, and the placement of :func:`chosen_placement` kept. It is chosen
        as soon as a best set has a usage demonstration, after the first round that has one, so that the
        optimisation rounds score their candidates, and find their failures, as the test-time agent will read
        them: a set the agent never calls with the demonstration first gives the optimiser nothing to fix. That
        scoring becomes the best set's (its score, the failure the next round works on). The set as it was
        scored (usage first) is not scored again; each other scoring is kept in the state (``usage-first``,
        ``usage-last``, ``usage-alone``), so a rerun does not repeat it."""
        state = self.state
        if self.config.usage_placement != "chosen" or state.placement is not None:
            return
        usage = self.demonstrated(self.action_set(actions), "usage/placement").usage
        if usage is None:
            return
        keys: dict[UsagePlacement, str] = {}
        scored_as = state.best_key
        for placement in get_args(UsagePlacement):
            if placement == "first" and scored_as is not None and state.scored[scored_as].score.actions == actions:
                keys[placement] = scored_as  # the set as scored, all of it, shown first
                continue
            key = keys[placement] = f"usage-{placement}"
            if key not in state.scored:
                self.progress(f"scoring the best set with its usage demonstration placed {placement}")
                placed = usage.model_copy(update={"placement": placement})
                shown = self.action_set(actions).model_copy(update={"usage": placed})
                trajectories = self.run_tasks(shown, key)
                state.scored[key], _ = score_trajectories(
                    trajectories, actions, self.config.score_terms, len(state.rounds) - 1, 0, self.config.history
                )
                self.save(state)
        results = {placement: state.scored[key].score for placement, key in keys.items()}
        chosen = chosen_placement(results)
        told = ", ".join(f"{p} {r.score:.3f} ({r.progress:.0%} progress)" for p, r in results.items())
        self.progress(f"usage demonstration placed {chosen}: the best set scored {told}")
        state.placement, state.best_key, state.best_score = chosen, keys[chosen], results[chosen].score
        self.save(state)


def chosen_placement(results: Mapping[UsagePlacement, CandidateScore]) -> UsagePlacement:
    """The placement whose scoring did best: the highest score, then the most progress (the paper's terms tie at
    zero when no learned call works, and the agent that got further is the better guide), a tie keeping the
    earlier of first (the paper's), last and alone."""
    order = get_args(UsagePlacement)
    return max(results, key=lambda p: (results[p].score, results[p].progress, -order.index(p)))


def _problems_text(problems: Mapping[str, Problem]) -> str:
    parts = []
    for name, problem in problems.items():
        head = f"In {name}:" if name else "In the answer:"
        parts.append(f"{head}\n{problem.text}")
    return "\n\n".join(parts)


def _feedback_of(problems: Mapping[str, Problem], name: str) -> Feedback | None:
    """The feedback a fixed version answers: its own problem, else what was wrong with the answer as a whole."""
    if not problems:
        return None
    own = problems.get(name)
    if own is not None:
        return Feedback(kind=own.kind, text=own.text)
    kinds = {p.kind for p in problems.values()}
    return Feedback(kind="traceback" if "traceback" in kinds else "finding", text=_problems_text(problems))
