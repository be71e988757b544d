"""The agents' prompts, built from the text templates under ``data/prompts/`` (``string.Template`` files:
``$name`` fields filled here; no prompt text lives in code) and from the environment family's profile (its
domain text and demonstrations)."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from importlib import resources
from string import Template

from learnact.actions.models import ActionSet, LearnedAction, UsageDemonstration
from learnact.actions.transcript import StepWindow, Turn, render_turns
from learnact.envs import PrimitiveSpec, env_profile

DATA = "learnact.engine.agents"


@cache
def template(name: str) -> Template:
    """The template ``data/prompts/<name>.txt``."""
    return Template(resources.files(DATA).joinpath("data", "prompts", f"{name}.txt").read_text(encoding="utf-8"))


def fill(name: str, **fields: object) -> str:
    return template(name).substitute({k: str(v) for k, v in fields.items()})


@dataclass(frozen=True)
class Demonstration:
    env: str
    task: str
    type: str
    goal: str
    initial: str
    turns: tuple[Turn, ...]


def demonstration(env_name: str, task_type: str, thoughts: bool) -> Demonstration | None:
    """The demonstration of ``task_type`` from the profile of ``env_name``'s family (made by ``python -m
    learnact.engine.agents.demos`` for the built-in families); with ``thoughts`` its plan is stated first as a
    Think step; None when the profile has none."""
    data = env_profile(env_name).demonstration(task_type)
    if data is None:
        return None
    turns = [Turn(s["action"], s["observation"]) for s in data["steps"]]
    if thoughts and data.get("thought"):
        turns.insert(0, Turn(data["thought"], "OK.", thought=True))
    return Demonstration(
        env=data["env"],
        task=data["task"],
        type=data["type"],
        goal=data["goal"],
        initial=data["initial"],
        turns=tuple(turns),
    )


def primitives_text(primitives: list[PrimitiveSpec]) -> str:
    parts = []
    for p in primitives:
        doc = "\n".join(f"    {line}" for line in p.doc.strip().splitlines())
        parts.append(f"{p.signature()}\n{doc}")
    return "\n".join(parts)


def example_call(primitives: list[PrimitiveSpec]) -> str:
    if not primitives:
        return "action()"
    p = primitives[0]
    return f"{p.name}({', '.join(repr(param.name) if param.type == 'str' else '1' for param in p.params)})"


def action_signature(action: LearnedAction) -> str:
    """``name(param, ...)`` read from the action's definition (parsed, never run); the bare name when its
    code holds no definition of that name (the sandbox's check refuses such a module anyway)."""
    try:
        tree = ast.parse(action.code)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return action.name
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == action.name:
            a = node.args
            names = [p.arg for p in [*a.posonlyargs, *a.args]]
            names += [f"*{a.vararg.arg}"] if a.vararg else ["*"] if a.kwonlyargs else []
            names += [p.arg for p in a.kwonlyargs] + ([f"**{a.kwarg.arg}"] if a.kwarg else [])
            return f"{action.name}({', '.join(names)})"
    return action.name


def actions_text(actions: ActionSet) -> str:
    """The learned actions as the agent sees them: signature, description, usage example, usage notes."""
    parts = []
    for action in actions.actions:
        lines = [action_signature(action)]
        lines += [f"    {line}" for line in action.description.strip().splitlines()]
        if action.example.strip():
            lines.append(fill("action_example", example=action.example.strip()).rstrip())
        lines += [fill("action_note", note=" ".join(note.split())).rstrip() for note in action.notes if note.strip()]
        parts.append("\n".join(lines))
    return "\n".join(parts)


def call_example(primitives: list[PrimitiveSpec], actions: ActionSet | None = None) -> str:
    """The call the agent is shown as an example of a step: a learned action's usage when it has any."""
    if actions is not None and actions.actions:
        usage = next((a.example.strip() for a in actions.actions if a.example.strip()), None)
        return usage or action_signature(actions.actions[0])
    return example_call(primitives)


def one_action(actions: ActionSet | None) -> str:
    """What an agent's step calls: one action, learned or primitive, when a library is loaded."""
    return "one action, learned or primitive" if actions is not None and actions.actions else "one primitive action"


def instruction(
    react: bool,
    env_name: str,
    task_type: str,
    primitives: list[PrimitiveSpec],
    actions: ActionSet | None = None,
    notes: tuple[str, ...] = (),
) -> str:
    """The agent's instruction: the domain and the primitives, the learned ``actions`` next to them (learnact),
    and the ``notes`` of earlier reflections at the end (the reflexion methods)."""
    example = call_example(primitives, actions)
    if actions is not None and actions.actions:  # learned actions first, and the call asked for is one of any
        shown = fill(
            "learned_actions", actions=actions_text(actions), primitives=primitives_text(primitives), example=example
        )
    else:
        shown = fill("primitive_actions", primitives=primitives_text(primitives))
    text = fill(
        "react" if react else "act",
        domain=env_profile(env_name).domain_text(task_type),
        actions=shown.strip(),
        one_action=one_action(actions),
        example=example,
    ).strip()
    if notes:
        text += "\n\n" + fill("notes", notes="\n".join(f"- {' '.join(note.split())}" for note in notes)).strip()
    return text


def task_prompt(
    demo: Demonstration | None,
    goal: str,
    initial: str,
    turns: list[Turn],
    window: int,
    usage: UsageDemonstration | None = None,
) -> str:
    """The agent's request: the learned actions' ``usage`` demonstration (learnact) and the primitive
    demonstration, as the usage demonstration's placement says (before it, after it, or alone), the goal, the
    first observation and the last ``window`` steps."""
    shown = []
    if demo is not None and (usage is None or usage.placement != "alone"):
        shown.append(fill("demonstration", goal=demo.goal, initial=demo.initial, history=render_turns(demo.turns)))
    if usage is not None:
        steps = [Turn(step.code, step.observation) for step in usage.steps]
        text = fill("usage_demonstration", goal=usage.goal, initial=usage.initial, history=render_turns(steps))
        shown.insert(len(shown) if usage.placement == "last" else 0, text)
    shown_demo = "".join(shown)
    history = render_turns(turns, StepWindow(window, template("omitted")))
    return fill("task", demonstration=shown_demo, goal=goal, initial=initial, history=history)


def program_instruction(env_name: str, task_type: str, primitives: list[PrimitiveSpec]) -> str:
    """code_as_policy's instruction: the domain, the primitives, and what to answer (one whole program)."""
    return fill(
        "program", domain=env_profile(env_name).domain_text(task_type), primitives=primitives_text(primitives)
    ).strip()


def program_task_prompt(demo: Demonstration | None, goal: str, initial: str) -> str:
    """code_as_policy's task: the demonstration shown as a program (its steps' code lines in order), the
    goal and the initial observation."""
    shown_demo = ""
    if demo is not None:
        lines = [turn.text for turn in demo.turns if not turn.thought]
        shown_demo = fill("program_demonstration", goal=demo.goal, initial=demo.initial, program="\n".join(lines))
    return fill("program_task", demonstration=shown_demo, goal=goal, initial=initial)
