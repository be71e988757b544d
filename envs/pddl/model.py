"""The planning task as plain data: what the loader produces and the simulator, text and planner read.

An atom is a tuple ``(predicate, arg1, arg2, ...)``; in action schemas an argument that names a
parameter is written ``?x``, anything else is a constant. Names are lower-case (PDDL is
case-insensitive), so ``B1`` from an agent and ``b1`` from a file are the same object.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from learnact.actions.errors import LearnactError

Atom = tuple[str, ...]
ROOT_TYPE = "object"


class PddlError(LearnactError):
    """A PDDL file that cannot be used: the message names the file and what is wrong."""


@dataclass(frozen=True)
class Schema:
    """One STRIPS action schema: typed parameters, precondition atoms, add and delete lists."""

    name: str
    params: tuple[tuple[str, str], ...]  # (variable without '?', type)
    pre: tuple[Atom, ...]
    add: tuple[Atom, ...]
    delete: tuple[Atom, ...]


@dataclass(frozen=True)
class Domain:
    name: str
    path: Path | None
    types: dict[str, str]  # type -> parent type (ROOT_TYPE for top-level types)
    predicates: dict[str, tuple[str, ...]]  # predicate -> variable names, for arity and text
    constants: dict[str, str]  # constant -> type
    schemas: dict[str, Schema]  # in file order

    @property
    def typed(self) -> bool:
        return bool(self.types)


@dataclass(frozen=True)
class Problem:
    name: str
    path: Path | None
    objects: dict[str, str]  # every object the task knows, domain constants included -> type
    init: frozenset[Atom]
    goal: tuple[Atom, ...]
