"""The agents' prompts, built from the text templates and demonstrations under ``data/`` (the templates
are ``string.Template`` files: ``$name`` fields filled here; no prompt text lives in code)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from string import Template

from learnact.envs import PrimitiveSpec

DATA = "learnact.engine.agents"


@cache
def template(name: str) -> Template:
    """The template ``data/prompts/<name>.txt``."""
    return Template(resources.files(DATA).joinpath("data", "prompts", f"{name}.txt").read_text(encoding="utf-8"))


def fill(name: str, **fields: object) -> str:
    return template(name).substitute({k: str(v) for k, v in fields.items()})


@cache
def domain_text(env_name: str, task_type: str) -> str:
    """What the environment is, from ``data/domains/``: by task type for PDDL, one text for ALFWorld;
    empty for a domain without a description (an external PDDL domain)."""
    key = "alfworld" if env_name.startswith("alfworld") else task_type
    path = resources.files(DATA).joinpath("data", "domains", f"{key}.txt")
    return path.read_text(encoding="utf-8").strip() if path.is_file() else ""


@dataclass(frozen=True)
class Turn:
    """One step of a history: what was written (``Action: …`` or ``Think: …``) and what came back."""

    written: str
    observation: str


@dataclass(frozen=True)
class Demonstration:
    env: str
    task: str
    type: str
    goal: str
    initial: str
    turns: tuple[Turn, ...]


def demo_path(task_type: str) -> str:
    return f"{task_type}.json"


@cache
def demonstration(task_type: str, thoughts: bool) -> Demonstration | None:
    """The demonstration of ``task_type`` (``data/demos/<type>.json``, made by ``python -m
    learnact.engine.agents.demos``); with ``thoughts`` its plan is stated first as a Think step."""
    path = resources.files(DATA).joinpath("data", "demos", demo_path(task_type))
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    turns = [Turn(f"Action: {s['action']}", s["observation"]) for s in data["steps"]]
    if thoughts and data.get("thought"):
        turns.insert(0, Turn(f"Think: {data['thought']}", "OK."))
    return Demonstration(
        env=data["env"], task=data["task"], type=data["type"], goal=data["goal"], initial=data["initial"],
        turns=tuple(turns),
    )  # fmt: skip


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


def history_text(turns: list[Turn], window: int) -> str:
    shown = turns[-window:] if window > 0 else []
    lines = [fill("omitted", count=len(turns) - len(shown)).strip()] if len(shown) < len(turns) else []
    for turn in shown:
        lines += [turn.written, f"Observation: {turn.observation}"]
    return "\n".join(lines)


def instruction(react: bool, env_name: str, task_type: str, primitives: list[PrimitiveSpec]) -> str:
    return fill(
        "react" if react else "act",
        domain=domain_text(env_name, task_type),
        primitives=primitives_text(primitives),
        example=example_call(primitives),
    ).strip()


def task_prompt(demo: Demonstration | None, goal: str, initial: str, turns: list[Turn], window: int) -> str:
    shown_demo = (
        fill("demonstration", goal=demo.goal, initial=demo.initial, history=history_text(list(demo.turns), 10**6))
        if demo is not None
        else ""
    )
    return fill("task", demonstration=shown_demo, goal=goal, initial=initial, history=history_text(turns, window))


def program_instruction(env_name: str, task_type: str, primitives: list[PrimitiveSpec]) -> str:
    """code_as_policy's instruction: the domain, the primitives, and what to answer (one whole program)."""
    return fill("program", domain=domain_text(env_name, task_type), primitives=primitives_text(primitives)).strip()


def program_task_prompt(demo: Demonstration | None, goal: str, initial: str) -> str:
    """code_as_policy's task: the demonstration shown as a program (its steps' code lines in order), the
    goal and the initial observation."""
    shown_demo = ""
    if demo is not None:
        lines = [t.written.removeprefix("Action: ") for t in demo.turns if t.written.startswith("Action: ")]
        shown_demo = fill("program_demonstration", goal=demo.goal, initial=demo.initial, program="\n".join(lines))
    return fill("program_task", demonstration=shown_demo, goal=goal, initial=initial)
