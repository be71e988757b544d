"""ALFWorld primitives: the action space of LearnAct/AgentBoard and their game commands, both ways.

The names, parameters and commands are those of the original code (``alfworld_wrap`` in LearnAct):
``take(obj, recep)`` is ``take {obj} from {recep}``, ``put(obj, recep)`` is ``put {obj} in/on {recep}``,
and so on. ``toggle`` is kept as in the original (``toggle {obj_or_recep}``) although the json_2.1.1
games have no such command, so the game always answers "Nothing happens."; ``use`` switches a lamp on.
"""

from __future__ import annotations

import re
from typing import Any

from learnact.envs.base import ParamSpec, PrimitiveSpec

NOTHING_HAPPENS = "Nothing happens."


def _spec(name: str, params: tuple[str, ...], doc: str) -> PrimitiveSpec:
    return PrimitiveSpec(name=name, params=tuple(ParamSpec(name=p) for p in params), doc=doc)


PRIMITIVES: tuple[PrimitiveSpec, ...] = (
    _spec(
        "goto",
        ("recep",),
        "Go to the receptacle recep (e.g. 'cabinet 1'). Precondition: recep exists "
        "in the room. Effect: you are at recep and see what is on it (or that it is closed).",
    ),
    _spec(
        "take",
        ("obj", "recep"),
        "Pick up obj from recep. Preconditions: you are at recep, recep is open "
        "if it can be opened, obj is in/on recep, your hands are empty. Effect: you hold obj.",
    ),
    _spec(
        "put",
        ("obj", "recep"),
        "Put the held obj in/on recep. Preconditions: you hold obj, you are at "
        "recep, recep is open if it can be opened. Effect: obj is in/on recep, your hands are empty.",
    ),
    _spec(
        "open",
        ("recep",),
        "Open recep. Preconditions: you are at recep, it can be opened and is closed. "
        "Effect: recep is open and you see what is inside.",
    ),
    _spec("close", ("recep",), "Close recep. Preconditions: you are at recep and it is open. Effect: recep is closed."),
    _spec(
        "toggle",
        ("obj_or_recep",),
        "Toggle obj_or_recep, as in the original action space. These games "
        "have no toggle command: the game answers 'Nothing happens.'. To switch a lamp on, use use(obj).",
    ),
    _spec(
        "clean",
        ("obj", "recep"),
        "Clean the held obj with recep (a sinkbasin). Preconditions: you hold "
        "obj and you are at recep. Effect: obj is clean.",
    ),
    _spec(
        "cool",
        ("obj", "recep"),
        "Cool the held obj with recep (a fridge). Preconditions: you hold obj "
        "and you are at recep. Effect: obj is cool.",
    ),
    _spec(
        "heat",
        ("obj", "recep"),
        "Heat the held obj with recep (a microwave). Preconditions: you hold obj "
        "and you are at recep. Effect: obj is hot.",
    ),
    _spec("inventory", (), "Tell what you are carrying. No precondition, no effect on the room."),
    _spec(
        "examine",
        ("obj_or_recep",),
        "Look closely at obj_or_recep. Precondition: you are at it (or hold "
        "the object). Effect: a description of it and what it holds; nothing changes.",
    ),
    _spec(
        "use",
        ("obj",),
        "Use obj, e.g. switch on a desklamp or floorlamp. Preconditions: you are at the "
        "receptacle that holds obj and obj can be toggled. Effect: obj is on.",
    ),
)

# name -> command template, in the order of the parameters.
TEMPLATES: dict[str, str] = {
    "goto": "go to {}",
    "take": "take {} from {}",
    "put": "put {} in/on {}",
    "open": "open {}",
    "close": "close {}",
    "toggle": "toggle {}",
    "clean": "clean {} with {}",
    "cool": "cool {} with {}",
    "heat": "heat {} with {}",
    "inventory": "inventory",
    "examine": "examine {}",
    "use": "use {}",
}

_ARG = r"(\S(?:.*\S)?)"  # non-empty, no surrounding blanks
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    (name, re.compile("^" + re.escape(template).replace(re.escape("{}"), _ARG) + "$"))
    for name, template in TEMPLATES.items()
] + [
    # ALFWorld >= 0.4 calls putting "move {obj} to {recep}" (its expert speaks so); same primitive.
    ("put", re.compile(f"^move {_ARG} to {_ARG}$")),
]


def to_command(name: str, args: list[Any]) -> str:
    """The game command of a primitive call, e.g. ``take('apple 1', 'countertop 1')``."""
    return TEMPLATES[name].format(*(str(a).strip() for a in args))


def from_command(command: str) -> tuple[str, list[str]] | None:
    """The primitive call of a game command, or None when no primitive says it (``look``, ``help``)."""
    text = " ".join(command.split())
    for name, pattern in _PATTERNS:
        match = pattern.match(text)
        if match:
            return name, list(match.groups())
    return None
