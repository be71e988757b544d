"""LearnAct's learner: the model writes Python actions over the primitives, the sandbox runs them, and what
goes wrong drives the model to repair them (Create → Validate → Score → Optimise, as in the paper).

The learner holds the algorithm only. What it needs from above is passed in, so that this room never
imports the engine: the prompts (:class:`PromptBook`), one way to ask the model (:data:`Ask`, which names
each call so it can be found in the run's call log), and one way to run the act agent with a candidate set
on the training tasks (:data:`RunTasks`). Validation runs each function's usage example in the sandbox
directly (:class:`SandboxValidator`).

Every answer of the model is untrusted text: functions are read with ``ast`` (never run on the host), sizes
are bounded, names are checked. Every version written goes to the :class:`Library` with its origin, the
call that wrote it and the feedback behind it. The learner's progress is a :class:`LearnState` handed to
``save`` after every step, and each library write is idempotent (an identical version already written by
the same call is reused), so a killed run resumes where it stopped without asking the model again.
"""

from __future__ import annotations

import ast
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from learnact.actions import check
from learnact.actions.library import (
    ACTION_NAME,
    ActionVersion,
    CallOutcome,
    CandidateScore,
    Feedback,
    LearningProgress,
    Library,
    Origin,
    RoundRecord,
)
from learnact.actions.models import ActionSet, CodeKind, Finding, Severity, UsageDemonstration
from learnact.envs import Environment, PrimitiveSpec, env_profile
from learnact.sandbox import ExecutionResult, ExecutionStatus, Sandbox

log = logging.getLogger(__name__)

MAX_ANSWER_CHARS = 40_000  # a longer answer is cut before it is parsed
MAX_FUNCTION_CHARS = 6_000
MAX_NOTE_CHARS = 600
MAX_REASON_CHARS = 1_000
MAX_SHOWN_CALL_CHARS = 400  # one primitive sub-step as shown to the model

ScoreTerm = Literal["step_correction", "call_ratio", "success"]
Style = Literal["compose", "decompose"]
HistoryView = Literal["last", "full"]


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


class Message(BaseModel):
    """One chat message of a learner prompt."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "user", "assistant"]
    content: str


class FailureCase(BaseModel):
    """The first failed call of a learned action while scoring a candidate: what the Optimise prompt shows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: int
    task: str
    goal: str
    step: int
    call: str  # the agent's line
    error: str
    history: str  # the last step, or the whole trajectory up to the call
    substeps: tuple[str, ...]  # the primitive calls that ran inside, with what was observed


class PromptBook(Protocol):
    """The learner's prompts (text templates live with the engine's other prompts)."""

    def create(self, sample: int) -> list[Message]:
        """The Create request of ``sample``: the primitive API, one demonstration, what to write, and which kind
        of step to look for first (samples differ by it, not by temperature alone)."""

    def fix(self, problems: str) -> str:
        """The user message sending ``problems`` (findings, tracebacks) back: fix and rewrite the whole answer."""

    def optimise(self, case: FailureCase, actions_code: str) -> list[Message]:
        """The Optimise request for ``case``, showing the whole current set ``actions_code``."""


# Ask the learner model: (call id, messages, sample, fixing, definitions) -> the answer's text. The call id names
# the call in the run's call log; ``fixing`` marks an answer to a problem found in the previous one, which is
# asked for without sampling (temperature 0): a fix should follow the feedback; ``definitions`` marks a request
# whose answer must be Python function definitions and nothing else (create and fix), which the asker may
# enforce (a grammar the model samples under).
Ask = Callable[[str, Sequence[Message], int, bool, bool], str]


class CallView(BaseModel):
    """A primitive call that ran inside one step."""

    model_config = ConfigDict(frozen=True)

    name: str
    args: list[Any]
    observation: str
    valid: bool = True  # the environment's verdict on the call

    def line(self) -> str:
        """The call as a line of code with what was observed, bounded."""
        args = ", ".join(repr(a) for a in self.args)
        return _cut(f"{self.name}({args}) -> {self.observation}", MAX_SHOWN_CALL_CHARS)


class StepView(BaseModel):
    """One step of the agent while scoring: its line of code and what running it did."""

    model_config = ConfigDict(frozen=True)

    index: int
    code: str
    observation: str
    status: str | None  # the ExecutionStatus value; None for a step that ran no code
    error: str | None = None  # "Type: message" when the code raised (or the check rejected it)
    calls: list[CallView] = Field(default_factory=list)


class Trajectory(BaseModel):
    """One scoring episode as the learner reads it."""

    model_config = ConfigDict(frozen=True)

    task: str
    goal: str
    initial: str
    success: bool
    steps: list[StepView]


# (actions, round, candidate) -> one trajectory per training task.
RunTasks = Callable[[ActionSet, int, int], list[Trajectory]]
"""Score a candidate set: (actions, round, candidate index) -> the trajectories of the training tasks."""
Demonstrate = Callable[[ActionSet], UsageDemonstration | None]
"""The selected set at work on the demonstration's task, grounded in the sandbox (None: none reached its goal)."""


# --- reading answers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """What is wrong with one function (or, named ``""``, with the whole answer), as shown to the model."""

    kind: Literal["finding", "traceback"]
    text: str


@dataclass(frozen=True)
class ParsedAction:
    name: str
    code: str
    description: str
    example: str


@dataclass
class ParsedAnswer:
    actions: list[ParsedAction] = field(default_factory=list)
    problems: dict[str, Problem] = field(default_factory=dict)  # by function name; "" for the answer


_FENCE = re.compile(r"```[ \t]*(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_EXAMPLE = re.compile(r"^(?:usage[ \t]+)?example[ \t]*:[ \t]*(.+)$", re.IGNORECASE)  # on a stripped line


def code_of(answer: str) -> str:
    """The code of an answer: its fenced blocks joined, else the whole text."""
    answer = answer[:MAX_ANSWER_CHARS]
    blocks = _FENCE.findall(answer)
    return "\n\n".join(b.strip("\n") for b in blocks) if blocks else answer


_TOP_DEF = re.compile(r"^def[ \t]+([A-Za-z_]\w*)", re.MULTILINE)


def _definitions(code: str) -> tuple[list[tuple[ast.FunctionDef, str]], dict[str, Problem]]:
    """The top-level functions of ``code`` with their source. When the whole does not parse, each top-level
    ``def`` is parsed on its own, so that one broken function does not hide the others (a weak model's
    answer often has one)."""
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        whole = Problem("finding", f"line {exc.lineno or 1}: SyntaxError: {exc.msg}")
    except (ValueError, RecursionError, MemoryError) as exc:
        return [], {"": Problem("finding", f"the code cannot be parsed: {type(exc).__name__}")}
    else:
        return [(n, ast.get_source_segment(code, n) or "") for n in tree.body if isinstance(n, ast.FunctionDef)], {}
    starts = [m.start() for m in _TOP_DEF.finditer(code)]
    if not starts:
        return [], {"": whole}
    found: list[tuple[ast.FunctionDef, str]] = []
    problems: dict[str, Problem] = {}
    for index, start in enumerate(starts):
        chunk = code[start : starts[index + 1] if index + 1 < len(starts) else len(code)]
        name = _TOP_DEF.match(chunk).group(1)  # type: ignore[union-attr]
        chunk = "\n" * code.count("\n", 0, start) + chunk  # line numbers as in the whole answer
        try:
            tree = ast.parse(chunk)
        except SyntaxError as exc:
            problems[name] = Problem("finding", f"line {exc.lineno or 1}: SyntaxError: {exc.msg}")
            continue
        except (ValueError, RecursionError, MemoryError) as exc:
            problems[name] = Problem("finding", f"{name} cannot be parsed: {type(exc).__name__}")
            continue
        found += [(n, ast.get_source_segment(chunk, n) or "") for n in tree.body if isinstance(n, ast.FunctionDef)]
    return found, problems


def parse_actions(answer: str, primitives: Iterable[str], max_actions: int) -> ParsedAnswer:
    """The functions an answer defines, each with its description (the docstring's first line) and usage
    example (a docstring line ``Example: call(...)``); what cannot be used is a problem to send back."""
    parsed = ParsedAnswer()
    code = code_of(answer)
    no_function = Problem("finding", "the answer defines no Python function (def ...) in a ```python block")
    if not re.search(r"^[ \t]*def\s", code, re.MULTILINE):
        parsed.problems[""] = no_function
        return parsed
    functions, parsed.problems = _definitions(code)
    reserved = {p.lower() for p in primitives}
    if not functions and not parsed.problems:
        parsed.problems[""] = no_function
    if len(functions) > max_actions:
        parsed.problems[""] = Problem("finding", f"write at most {max_actions} functions, not {len(functions)}")
    if "" in parsed.problems:
        return parsed
    seen: set[str] = set()
    for node, source in functions:
        name = node.name
        if name in seen:
            parsed.problems[name] = Problem("finding", f"{name} is defined twice; define each function once")
            continue
        seen.add(name)
        docstring = ast.get_docstring(node) or ""
        lines = [line.strip() for line in docstring.splitlines() if line.strip()]
        description = next((line for line in lines if not _EXAMPLE.match(line)), "")
        example = next((m.group(1).strip().strip("`") for line in lines if (m := _EXAMPLE.match(line))), "")
        action = ParsedAction(name, source.strip() + "\n", description, example)
        found = []
        if node.decorator_list:
            found.append(f"{name} has a decorator; write plain functions")
        if not re.match(ACTION_NAME, name):
            found.append(f"the name {name!r} is too long or not a plain identifier")
        elif name.lower() in reserved:
            found.append(
                f"{name} is a primitive action's name: the primitive actions exist already; call them, and give "
                "your function another name"
            )
        if len(source) > MAX_FUNCTION_CHARS:
            found.append(f"{name} is {len(source)} characters long; keep each function under {MAX_FUNCTION_CHARS}")
        if not description:
            found.append(f"{name} has no docstring; its first line must describe in one sentence what it does")
        if not example:
            found.append(f"{name}'s docstring has no usage example, a line `Example: {name}(...)`")
        elif not _parses(example):
            found.append(f"the usage example of {name} ({example}) is not one line of valid Python")
        elif not _calls_name(example, name):
            found.append(f"the usage example of {name} ({example}) does not call {name}")
        if found:
            parsed.problems[name] = Problem("finding", "\n".join(found))
        if re.match(ACTION_NAME, name):  # a name that cannot name a version is reported, never recorded
            parsed.actions.append(action)
    return parsed


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def _calls_name(code: str, name: str) -> bool:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == name for n in ast.walk(tree))


def called_names(code: str, names: Iterable[str]) -> list[str]:
    """The names among ``names`` that ``code`` calls, in the order of their first call."""
    wanted = set(names)
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    calls.sort(key=lambda n: (n.lineno, n.col_offset))
    return list(dict.fromkeys(n.func.id for n in calls if n.func.id in wanted))  # type: ignore[attr-defined]


def combines_actions(action: ParsedAction, callable_names: Iterable[str]) -> bool:
    """Whether the function calls primitives (or other actions) at least twice: two call sites, or one in a
    loop. Statements after a ``return``, ``raise``, ``break`` or ``continue`` in the same block never run, so
    their calls do not count (``return Pickup(b)`` then ``return Putdown(b)`` calls one primitive)."""
    wanted = set(callable_names)

    def calls_in(node: ast.AST) -> int:
        return sum(
            isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in wanted for n in ast.walk(node)
        )

    def sites(statements: list[ast.stmt]) -> int:
        count = 0
        for statement in statements:
            if isinstance(statement, (ast.For, ast.AsyncFor, ast.While)) and calls_in(statement):
                return 2  # one call site in a loop runs again and again
            nested = [getattr(statement, field, None) for field in ("body", "orelse", "finalbody", "handlers")]
            blocks = [block for block in nested if isinstance(block, list) and block]
            if blocks and not isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                own = [n for n in ast.iter_child_nodes(statement) if not isinstance(n, (ast.stmt, ast.excepthandler))]
                count += sum(calls_in(n) for n in own)
                count += max(sites(_statements(block)) for block in blocks)
            else:
                count += calls_in(statement)
            if isinstance(statement, (ast.Return, ast.Raise, ast.Break, ast.Continue)):
                break  # what follows in this block never runs
        return count

    functions = [n for n in ast.parse(action.code).body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return any(sites(function.body) >= 2 for function in functions)


def _statements(block: list) -> list[ast.stmt]:
    """A block's statements; an ``except`` handler's are its body."""
    return [s for item in block for s in (item.body if isinstance(item, ast.excepthandler) else [item])]


@dataclass(frozen=True)
class Improvement:
    """An Optimise answer: the failure reason and either an Update (code) or a Plan (a usage note)."""

    kind: Literal["update", "plan"]
    reason: str
    content: str


# Each pattern stays on one line where it may fail (``[^\w\n]``), so that hostile text cannot make it slow.
_IMPROVE = re.compile(r"^[^\w\n]*improve[^\w\n]*(update|plan)\b", re.IGNORECASE | re.MULTILINE)
_REASON = re.compile(
    r"failed[ \t]+reason[ \t]*:(.*?)(?=^[^\w\n]*improve\b|\Z)", re.IGNORECASE | re.DOTALL | re.MULTILINE
)
_CONTENT = re.compile(r"^[^\w\n]*content[ \t]*:(.*)\Z", re.IGNORECASE | re.DOTALL | re.MULTILINE)


def parse_improvement(answer: str) -> Improvement | None:
    """The Optimise answer's parts; None when it says neither Update nor Plan."""
    answer = answer[:MAX_ANSWER_CHARS]
    improve = _IMPROVE.search(answer)
    if improve is None:
        return None
    reason = _REASON.search(answer)
    content = _CONTENT.search(answer, improve.end())
    text = content.group(1).strip() if content else answer[improve.end() :].strip()
    return Improvement(
        kind="plan" if improve.group(1).lower() == "plan" else "update",
        reason=_cut(" ".join(reason.group(1).split()), MAX_REASON_CHARS) if reason else "",
        content=text,
    )


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- validation in the sandbox --------------------------------------------------------------------


class SandboxValidator:
    """Checks functions (kind *action module*) and runs each one's usage example in the sandbox, on the
    environment reset to a training task; a function that fails gets its exact findings or traceback."""

    def __init__(self, sandbox: Sandbox, env: Environment, task: str) -> None:
        self.sandbox, self.env, self.task = sandbox, env, task
        self.primitives: list[PrimitiveSpec] = env.primitives()

    def verdict(self, action: ParsedAction, others: Iterable[str]) -> list[Finding]:
        """The static checker's findings on the function (the other functions of its set are callable)."""
        return check(action.code, CodeKind.action_module, self.primitives, known=set(others) - {action.name})

    def problems(
        self, actions: Sequence[ParsedAction], known: Mapping[str, Problem] | None = None
    ) -> dict[str, Problem]:
        """The problems of ``actions`` by name (none for a function that passed): ``known`` ones (from reading
        the answer) with the static checker's errors added; the usage example of a function without any is run.

        :raises SandboxUnavailable: when the sandbox cannot start.
        """
        names = [a.name for a in actions]
        callable_names = {p.name for p in self.primitives} | set(names)
        known = known or {}
        problems: dict[str, Problem] = dict(known)
        for action in actions:
            found = [known[action.name].text] if action.name in known else []
            errors = [f for f in self.verdict(action, names) if f.severity is Severity.error]
            found += [f.render(f"{action.name}.py") for f in errors]
            if not errors and not combines_actions(action, callable_names):
                found.append(f"{action.name} calls the primitive actions fewer than two times; combine at least two")
            if found:
                problems[action.name] = Problem("finding", "\n".join(found))
        loadable = [a for a in actions if a.name not in problems]
        module = "\n\n".join(a.code for a in loadable)
        for action in loadable:
            failure = self._run_example(module, action)
            if failure is not None:
                problems[action.name] = failure
        return problems

    def _run_example(self, module: str, action: ParsedAction) -> Problem | None:
        self.env.reset(self.task)
        with self.sandbox.session(self.primitives, self.env.call) as session:
            loaded = session.load_actions(module)
            if not loaded.ok:
                return _problem_of(loaded, "loading the functions")
            ran = session.execute(action.example)
            return None if ran.ok else _problem_of(ran, f"running the usage example {action.example}")


def _problem_of(result: ExecutionResult, doing: str) -> Problem:
    if result.status is ExecutionStatus.rejected:
        lines = "\n".join(f.render("<example>") for f in result.findings if f.severity is Severity.error)
        return Problem("finding", f"{doing} was refused by the static check:\n{lines}")
    if result.error is not None:
        trace = result.error.traceback.rstrip()
        last = f"{result.error.type}: {result.error.message}"
        text = f"{trace}\n{last}" if trace and last not in trace else trace or last
        return Problem("traceback", f"{doing} raised an exception:\n{text}")
    return Problem("traceback", f"{doing} ended with the status {result.status.value}")


# --- the learner's state ---------------------------------------------------------------------------


class Scored(BaseModel):
    """A scored candidate: its score, how often each action was called, and its first failed call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    score: CandidateScore
    calls: dict[str, int]
    failure: FailureCase | None = None


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


def _key(round_: int, index: int) -> str:
    return f"{round_}/{index}"


# --- the learner ------------------------------------------------------------------------------------


class LearnactLearner:
    """Create, validate, score and optimise candidate action sets; every version goes to ``library``."""

    def __init__(
        self,
        config: LearnactConfig,
        library: Library,
        prompts: PromptBook,
        ask: Ask,
        run_tasks: RunTasks,
        validator: SandboxValidator,
        env_name: str,
        state: LearnState | None = None,
        save: Callable[[LearnState], None] = lambda state: None,
        progress: Callable[[str], None] = lambda line: None,
        demonstrate: Demonstrate = lambda actions: None,
    ) -> None:
        self.config, self.library, self.prompts, self.ask = config, library, prompts, ask
        self.run_tasks, self.validator, self.env_name = run_tasks, validator, env_name
        self.state = state or LearnState()
        self.save, self.progress, self.demonstrate = save, progress, demonstrate
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
            state.candidates[0] = _unique([c for _, c in sorted(state.created.items()) if c])
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
            if round_ >= self.config.rounds:
                break
            failure = state.scored[state.best_key].failure if state.best_key else None
            if failure is None:
                self.progress(f"round {round_}: no learned-action call failed; stopping early")
                break
            if round_ + 1 not in state.candidates:
                state.candidates[round_ + 1] = self._optimise(round_ + 1, failure)
                self.save(state)
            round_ += 1
        return self._finish()

    # ---- Create and Validate -------------------------------------------------------------------------

    def _create(self, sample: int) -> dict[str, int]:
        messages = list(self.prompts.create(sample))
        return self._write_validated(f"create/s{sample}", messages, sample, Origin.created, 0, {}, None)

    def _write_validated(
        self,
        call_base: str,
        messages: list[Message],
        sample: int,
        origin: Origin,
        round_: int,
        parents: Mapping[str, int],
        feedback: Feedback | None,
        first_answer: str | None = None,
    ) -> dict[str, int]:
        """Ask (or take ``first_answer``), validate, send the problems back up to ``fix_tries`` times; record
        every attempt's functions as versions; the valid functions of the last attempt by name."""
        attempts: list[tuple[str, ParsedAnswer]] = []
        asked = messages
        for attempt in range(self.config.fix_tries + 1):
            call_id = f"{call_base}/t{attempt}"
            if attempt == 0 and first_answer is not None:
                answer = first_answer
            else:
                answer = self.ask(call_id, asked, sample, attempt > 0, True)
            parsed = parse_actions(answer, self.primitive_names, self.config.max_actions)
            if "" not in parsed.problems:
                parsed.problems = self.validator.problems(parsed.actions, parsed.problems)
            attempts.append((call_id, parsed))
            if not parsed.problems:
                break
            if attempt < self.config.fix_tries:
                shown = _problems_text(parsed.problems)
                self.progress(f"{call_base}: {len(parsed.problems)} problem(s) sent back to the model")
                # Rebuilt from the first prompt, the last answer and its problems: earlier answers are not
                # appended, so a small model does not copy its own mistake over and over.
                asked = [
                    *messages,
                    Message(role="assistant", content=answer[:MAX_ANSWER_CHARS]),
                    Message(role="user", content=self.prompts.fix(shown)),
                ]
        return self._record_attempts(attempts, origin, round_, parents, feedback)

    def _record_attempts(
        self,
        attempts: list[tuple[str, ParsedAnswer]],
        origin: Origin,
        round_: int,
        parents: Mapping[str, int],
        feedback: Feedback | None,
    ) -> dict[str, int]:
        latest: dict[str, ActionVersion] = {}
        previous_problems: dict[str, Problem] = {}
        for index, (call_id, parsed) in enumerate(attempts):
            final = index == len(attempts) - 1
            names = [a.name for a in parsed.actions]
            for action in parsed.actions:
                before = latest.get(action.name)
                parent = before.version if before else parents.get(action.name)
                if before is None and parent is not None:  # an Update that rewrote a function unchanged
                    before = latest[action.name] = self.library.get(action.name, parent)
                if before is not None and (before.code, before.description, before.example) == (
                    action.code,
                    action.description,
                    action.example,
                ):
                    if final and action.name in parsed.problems:
                        latest[action.name] = self._write(
                            action, Origin.validated_fix if index else origin, call_id, round_, parent,
                            before.feedback, names, dropped=parsed.problems[action.name].text,
                        )  # fmt: skip
                    continue
                why = feedback if index == 0 else _feedback_of(previous_problems, action.name)
                dropped = parsed.problems[action.name].text if final and action.name in parsed.problems else None
                latest[action.name] = self._write(
                    action, origin if index == 0 else Origin.validated_fix, call_id, round_, parent, why, names, dropped
                )
            previous_problems = parsed.problems
        final = attempts[-1][1]
        kept = {a.name for a in final.actions}
        for name, version in list(latest.items()):  # a function an earlier answer had and the last one left out
            if name not in kept and version.dropped is None:
                latest[name] = self._version(
                    name, version.code, description=version.description, example=version.example,
                    notes=version.notes, origin=Origin.validated_fix, parent=version.version,
                    call_id=attempts[-1][0], feedback=version.feedback, verdict=version.verdict, round=round_,
                    dropped=f"the model's last answer ({attempts[-1][0]}) left {name} out (renamed or removed)",
                )  # fmt: skip
        return {a.name: latest[a.name].version for a in final.actions if a.name not in final.problems}

    def _write(
        self,
        action: ParsedAction,
        origin: Origin,
        call_id: str | None,
        round_: int,
        parent: int | None,
        feedback: Feedback | None,
        names: Sequence[str],
        dropped: str | None = None,
        notes: Sequence[str] = (),
    ) -> ActionVersion:
        verdict = self.validator.verdict(action, names)
        return self._version(
            action.name, action.code, description=action.description, example=action.example, notes=tuple(notes),
            origin=origin, parent=parent, call_id=call_id, feedback=feedback, verdict=verdict, round=round_,
            dropped=dropped,
        )  # fmt: skip

    def _version(self, name: str, code: str, **fields: Any) -> ActionVersion:
        """A new version, or the identical one a killed run already wrote (same call, same code)."""
        for existing in self.library.versions(name) if name in self.library.names() else []:
            same = existing.code == code and all(
                getattr(existing, k) == (tuple(v) if k == "notes" else v)
                for k, v in fields.items()
                if k in ("notes", "origin", "parent", "call_id", "round", "dropped", "description", "example")
            )
            if same:
                return existing
        return self.library.new_version(name, code, **fields)

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
            round=round_, candidates=[s.score for s in scored], best=best_index,
            best_score=best.score.score if not rolled_back else state.best_score or 0.0, rolled_back=rolled_back,
        )  # fmt: skip
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
            kept = self.library.get(name, number)
            version = self._version(
                name, kept.code, description=kept.description, example=kept.example, notes=kept.notes,
                origin=Origin.rollback, parent=number, call_id=None, round=round_, verdict=kept.verdict,
                feedback=Feedback(kind="none", text=f"round {round_} scored lower than the set kept before it"),
            )  # fmt: skip
            restored[name] = version.version
        return restored

    def action_set(self, actions: Mapping[str, int]) -> ActionSet:
        """The versions ``actions`` names, as an agent gets them.

        :raises LibraryError: for a version the library does not hold.
        """
        return ActionSet(actions=tuple(self.library.get(n, v).as_learned() for n, v in actions.items()))

    def _score(self, round_: int, index: int, actions: Mapping[str, int]) -> Scored:
        trajectories = self.run_tasks(self.action_set(actions), round_, index)
        scored, outcomes = score_trajectories(
            trajectories, actions, self.config.score_terms, round_, index, self.config.history
        )
        already = {(o.round, o.candidate) for o in self.library.outcomes() if o.phase == "score"}
        if (round_, index) not in already:
            self.library.record_outcomes(outcomes)
        return scored

    # ---- Optimise --------------------------------------------------------------------------------------

    def _optimise(self, round_: int, failure: FailureCase) -> list[dict[str, int]]:
        state = self.state
        best = dict(state.best)
        found: list[dict[str, int]] = [best]
        actions_code = self.action_set(best).module
        trajectory = Feedback(kind="failed_call", text=failure.error, trajectory=failure.history)
        for sample in range(self.config.samples):
            key = _key(round_, sample)
            if key not in state.optimised:
                self.progress(f"round {round_}: improving {failure.name}, sample {sample + 1} of {self.config.samples}")
                state.optimised[key] = self._improve(round_, sample, failure, best, actions_code, trajectory)
                self.save(state)
            if state.optimised[key] is not None:
                found.append(state.optimised[key])  # type: ignore[arg-type]
        return _unique(found)

    def _improve(
        self,
        round_: int,
        sample: int,
        failure: FailureCase,
        best: dict[str, int],
        actions_code: str,
        trajectory: Feedback,
    ) -> dict[str, int] | None:
        messages = list(self.prompts.optimise(failure, actions_code))
        call_base = f"r{round_}/optimise/s{sample}"
        answer = self.ask(f"{call_base}/t0", messages, sample, False, False)
        improvement = parse_improvement(answer)
        if improvement is None:
            log.info("%s: the answer says neither Update nor Plan; no candidate", call_base)
            return None
        why = Feedback(
            kind="failed_call",
            text=_cut(f"{failure.error}\nFailed reason: {improvement.reason}", 60_000),
            trajectory=trajectory.trajectory,
        )
        if improvement.kind == "plan":
            note = _cut(" ".join(improvement.content.split()), MAX_NOTE_CHARS)
            if not note:
                return None
            kept = self.library.get(failure.name, best.get(failure.name, failure.version))
            version = self._version(
                kept.name, kept.code, description=kept.description, example=kept.example, notes=(*kept.notes, note),
                origin=Origin.plan_note, parent=kept.version, call_id=f"{call_base}/t0", round=round_,
                feedback=why, verdict=kept.verdict,
            )  # fmt: skip
            return {**best, kept.name: version.version}
        updated = self._write_validated(
            call_base, messages, sample, Origin.update, round_, best, why, first_answer=improvement.content
        )
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
            self._version(
                name, kept.code, description=kept.description, example=kept.example, notes=kept.notes,
                origin=kept.origin, parent=number, call_id=kept.call_id, round=len(state.rounds) - 1,
                verdict=kept.verdict, feedback=kept.feedback,
                dropped=f"never called while scoring the kept set on {tasks} training task(s)",
            )  # fmt: skip
            self.progress(f"dropped {name}: never called while scoring")
        usage = self.demonstrate(self.action_set(selected)) if selected else None
        self.library.select(selected, state.best_score, self.env_name, self._progress(state, finished=True), usage)
        state.selected = selected
        self.save(state)
        return selected


def _unique(sets: Iterable[dict[str, int]]) -> list[dict[str, int]]:
    seen: list[dict[str, int]] = []
    for s in sets:
        if s not in seen:
            seen.append(dict(s))
    return seen


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


# --- scoring ----------------------------------------------------------------------------------------


def score_trajectories(
    trajectories: Sequence[Trajectory],
    actions: Mapping[str, int],
    terms: Sequence[ScoreTerm],
    round_: int,
    candidate: int,
    history: HistoryView = "last",
) -> tuple[Scored, list[CallOutcome]]:
    """The seed's score of a candidate: ``step_correction`` (successful learned-action calls per call),
    ``call_ratio`` (successful calls per step) and ``success`` (the share of tasks solved), summed over
    ``terms``; one outcome per learned-action call; the first failed call as a :class:`FailureCase`.

    A call succeeded when its step ran without an error and no primitive inside it was invalid.
    """
    outcomes: list[CallOutcome] = []
    calls: dict[str, int] = dict.fromkeys(actions, 0)
    successes = steps = 0
    failure: FailureCase | None = None
    for trajectory in trajectories:
        for position, step in enumerate(trajectory.steps):
            steps += 1
            invalid = next((c.observation for c in step.calls if not c.valid), None)
            ok = step.status == ExecutionStatus.ok.value and invalid is None
            for name in called_names(step.code, actions):
                calls[name] += 1
                successes += ok
                error = None if ok else step.error or invalid or f"the step ended with the status {step.status}"
                substeps = [c.line() for c in step.calls]
                outcomes.append(
                    CallOutcome(
                        name=name, version=actions[name], phase="score", round=round_, candidate=candidate,
                        task=trajectory.task, step=step.index, code=step.code, ok=ok, status=step.status or "none",
                        error=error, primitive_steps=substeps,
                    )
                )  # fmt: skip
                if not ok and failure is None:
                    failure = FailureCase(
                        name=name, version=actions[name], task=trajectory.task, goal=trajectory.goal, step=step.index,
                        call=step.code, error=error or "", history=_history(trajectory, position, history),
                        substeps=tuple(substeps),
                    )  # fmt: skip
    total_calls = sum(calls.values())
    components = {
        "step_correction": successes / total_calls if total_calls else 0.0,
        "call_ratio": successes / steps if steps else 0.0,
        "success": sum(t.success for t in trajectories) / len(trajectories) if trajectories else 0.0,
    }
    score = CandidateScore(
        candidate=candidate, actions=dict(actions), score=sum(components[t] for t in terms), components=components,
        successes=sum(t.success for t in trajectories), tasks=len(trajectories),
    )  # fmt: skip
    return Scored(score=score, calls=calls, failure=failure), outcomes


def _history(trajectory: Trajectory, position: int, view: HistoryView) -> str:
    """What led to the failed call: the observation before it and the call (``last``), or the whole
    trajectory up to it (``full``)."""
    steps = trajectory.steps[: position + 1]
    if view == "last":
        before = steps[-2].observation if len(steps) > 1 else trajectory.initial
        return f"Observation: {before}\nAction: {steps[-1].code}"
    lines = [f"Goal: {trajectory.goal}", f"Observation: {trajectory.initial}"]
    for step in steps[:-1]:
        lines += [f"Action: {step.code}", f"Observation: {step.observation}"]
    lines.append(f"Action: {steps[-1].code}")
    return "\n".join(lines)
