"""Policies: what an episode asks for its next step, given the last observation.

A policy answers an :class:`Act` (one line of code for the sandbox), a :class:`Program` (code_as_policy:
one whole program, run once), a :class:`Think` (react: answered
"OK.", never run), a :class:`NoCode` (a model answer with no usable line: its message becomes the next
observation), or None (nothing more to do). A model policy raises :class:`LLMError` when its backbone
gives no answer; the episode records that as ``llm_error``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from learnact.actions.models import ActionSet
from learnact.actions.transcript import ChatMessage, Turn, call_code
from learnact.engine.agents.parsing import MAX_PROGRAM_CHARS, parse_answer, parse_program
from learnact.engine.agents.prompts import (
    call_example,
    demonstration,
    fill,
    instruction,
    one_action,
    program_instruction,
    program_task_prompt,
    task_prompt,
)
from learnact.engine.llm import Backbone, ChatRequest, chat_request
from learnact.engine.llm.grammar import MAX_LIST_ITEMS, call_grammar
from learnact.engine.records import ModelSettings
from learnact.envs import Environment, ResetInfo, env_profile

THINK_ANSWER = "OK."
STOP = ("\nObservation:",)
PROGRAM_MAX_TOKENS = 1024  # code_as_policy's default answer length: a whole program


@dataclass(frozen=True)
class PolicyContext:
    """What a method's policy is built from: the environment just reset to a task of ``task_type``, the model
    (None for a method without one), the episode's ``seed`` (sent with every model request) and what was
    learned for the run (``notes`` of reflection, learned ``actions``: empty or None when nothing was)."""

    env: Environment
    task_type: str
    reset: ResetInfo
    backbone: Backbone | None
    model: ModelSettings | None
    seed: int = 0
    notes: tuple[str, ...] = ()
    actions: ActionSet | None = None

    def asked(self) -> tuple[Backbone, ModelSettings]:
        """The model a model method asks, and how.

        :raises ValueError: for a context without a backbone or model settings.
        """
        if self.backbone is None or self.model is None:
            raise ValueError("a model method needs a model backbone and model settings")
        return self.backbone, self.model


@dataclass(frozen=True)
class Act:
    code: str
    answer: str | None = None


@dataclass(frozen=True)
class Program:
    """code_as_policy: a whole program (helper functions and the calls that use them), run once."""

    code: str
    answer: str


@dataclass(frozen=True)
class Think:
    thought: str
    answer: str


@dataclass(frozen=True)
class NoCode:
    message: str
    answer: str


Decision = Act | Program | Think | NoCode


class Policy(ABC):
    @abstractmethod
    def decide(self, observation: str) -> Decision | None:
        """The next step after ``observation`` (the last step's, or the task's first), None to stop.

        :raises LLMError: when a model backbone gives no answer.
        """


class ExpertPolicy(Policy):
    """Replays the environment's expert, one primitive call per step, as code."""

    def __init__(self, env: Environment) -> None:
        self._calls: Iterator[tuple[str, list[Any]]] = env.expert_calls()

    def decide(self, observation: str) -> Decision | None:
        call = next(self._calls, None)
        return None if call is None else Act(call_code(*call))


class ModelPolicy(Policy):
    """``act`` (and with ``react``, ``Think:`` steps): the instruction, one demonstration, the goal and the
    recent history go to the model, whose answer is parsed into one step. The instruction shows the learned
    ``actions`` next to the primitives (learnact) and ends with the ``notes`` of earlier reflections
    (act_reflexion, react_reflexion).

    The request carries the grammar of one call of an available action (learned first, then primitives; or a
    ``Think:`` line with ``react``), whose lists hold at most as many values as the task has objects. The
    history shown is the last ``window`` steps, fewer when the prompt would not leave the answer room in the
    backbone's context (:attr:`Backbone.context_tokens`): the oldest steps are dropped, never the instruction or
    the demonstrations, and the prompt says how many are not shown, as the paper's agents trim to their
    ``max_context_length``."""

    def __init__(self, context: PolicyContext, react: bool = False, window: int | None = None) -> None:
        """:raises ValueError: for a context without a backbone or model settings."""
        env, task_type, actions = context.env, context.task_type, context.actions
        primitives = env.primitives()
        self.backbone, self.model = context.asked()
        self.react, self.seed = react, context.seed
        self.window = window if window is not None else env_profile(env.name).window
        self.system = instruction(react, env.name, task_type, primitives, actions=actions, notes=context.notes)
        self.demo = demonstration(env.name, task_type, react)
        self.example, self.one_action = call_example(primitives, actions), one_action(actions)
        self.goal, self.initial = context.reset.goal, context.reset.observation
        self.usage = actions.usage if actions is not None and actions.actions else None
        learned = [action.name for action in actions.actions] if actions is not None else []
        objects = len(context.reset.objects) or MAX_LIST_ITEMS
        self.grammar = call_grammar([*learned, *(p.name for p in primitives)], thoughts=react, max_list_items=objects)
        self.turns: list[Turn] = []
        self._pending: Turn | None = None  # the last step, waiting for its observation

    def request(self) -> ChatRequest:
        """The next step's request: the most recent steps, up to the window, whose prompt leaves the answer's
        ``max_tokens`` room in the backbone's context. When not even the last step fits, none is shown (the
        backbone then says that the prompt is too long for its context).

        :raises LLMError: when the backbone cannot count tokens (a local model that was closed).
        """
        shown = min(self.window, len(self.turns))
        request = self._request(shown)
        context = self.backbone.context_tokens
        if context is None or self._fits(request, context):
            return request
        fewest, most = 0, shown - 1  # the most steps that fit lie in [fewest, most]; one was too many
        while fewest < most:
            middle = (fewest + most + 1) // 2
            if self._fits(self._request(middle), context):
                fewest = middle
            else:
                most = middle - 1
        return self._request(fewest)

    def _fits(self, request: ChatRequest, context: int) -> bool:
        return self.backbone.count_tokens(request.messages) + self.model.max_tokens <= context

    def _request(self, window: int) -> ChatRequest:
        prompt = task_prompt(self.demo, self.goal, self.initial, self.turns, window, self.usage).rstrip()
        messages = (ChatMessage(role="system", content=self.system), ChatMessage(role="user", content=prompt))
        return chat_request(self.model, messages, seed=self.seed, grammar=self.grammar, stop=STOP)

    def decide(self, observation: str) -> Decision | None:
        if self._pending is not None:
            self.turns.append(replace(self._pending, observation=observation))
        answer = self.backbone.complete(self.request()).text
        parsed = parse_answer(answer, thoughts=self.react)
        decision: Decision
        if parsed.thought is not None:
            decision = Think(parsed.thought, answer)
            self._pending = Turn(parsed.thought, "", thought=True)
        elif parsed.code is not None:
            decision = Act(parsed.code, answer)
            self._pending = Turn(parsed.code, "")
        else:
            first = next((line.strip() for line in answer.splitlines() if line.strip()), "")
            decision = NoCode(fill("no_code", one_action=self.one_action, example=self.example).strip(), answer)
            self._pending = Turn(first[:200], "")
        return decision


class ProgramPolicy(Policy):
    """``code_as_policy``: the instruction, the demonstration as a program, the goal and the initial
    observation go to the model once; its answer is one program, run once, with no feedback."""

    def __init__(self, context: PolicyContext) -> None:
        """:raises ValueError: for a context without a backbone or model settings."""
        env, task_type, reset = context.env, context.task_type, context.reset
        self.backbone, self.model = context.asked()
        self.seed = context.seed
        self.system = program_instruction(env.name, task_type, env.primitives())
        self.prompt = program_task_prompt(
            demonstration(env.name, task_type, False), reset.goal, reset.observation
        ).rstrip()
        self._asked = False

    def request(self) -> ChatRequest:
        messages = (ChatMessage(role="system", content=self.system), ChatMessage(role="user", content=self.prompt))
        return chat_request(self.model, messages, seed=self.seed)

    def decide(self, observation: str) -> Decision | None:
        if self._asked:
            return None
        self._asked = True
        answer = self.backbone.complete(self.request()).text
        program = parse_program(answer)
        if program is None:
            return NoCode(fill("no_program", limit=MAX_PROGRAM_CHARS).strip(), answer)
        return Program(program, answer)
