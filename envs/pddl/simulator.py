"""Grounded STRIPS with typing: the state is the set of true ground atoms.

Each schema is compiled once into atom templates whose arguments are parameter indices or
constants, so applying a ground action is a few tuple builds and set operations (microseconds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .model import ROOT_TYPE, Atom, Domain, Problem

_Template = tuple[str, tuple[int | str, ...]]  # predicate, parameter index or constant per argument


def _compile(atoms: Sequence[Atom], params: list[str]) -> tuple[_Template, ...]:
    return tuple((atom[0], tuple(params.index(a[1:]) if a.startswith("?") else a for a in atom[1:])) for atom in atoms)


def _ground(templates: tuple[_Template, ...], args: Sequence[str]) -> list[Atom]:
    return [(pred, *(args[a] if isinstance(a, int) else a for a in refs)) for pred, refs in templates]


@dataclass(frozen=True)
class _Compiled:
    types: tuple[str, ...]
    pre: tuple[_Template, ...]
    add: tuple[_Template, ...]
    delete: tuple[_Template, ...]


@dataclass(frozen=True)
class Unmet:
    """What keeps a ground action from applying: objects the task does not have, objects of the wrong type,
    or precondition atoms false in the state."""

    unknown: tuple[str, ...] = ()
    wrong_type: tuple[tuple[str, str], ...] = ()  # (object, the type the parameter needs)
    atoms: tuple[Atom, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.unknown or self.wrong_type or self.atoms)


def type_closure(domain: Domain) -> dict[str, frozenset[str]]:
    """Every type mapped to itself and all its ancestors (the root type included)."""
    closure = {}
    for typ in (*domain.types, ROOT_TYPE):
        seen, current = {ROOT_TYPE}, typ
        while current != ROOT_TYPE and current not in seen:
            seen.add(current)
            current = domain.types.get(current, ROOT_TYPE)
        closure[typ] = frozenset(seen)
    return closure


class Simulator:
    """One problem's state; :meth:`apply` changes it only when the preconditions hold."""

    def __init__(self, domain: Domain, problem: Problem) -> None:
        self.problem = problem
        closure = type_closure(domain)
        self._kinds = {obj: closure.get(typ, frozenset({typ, ROOT_TYPE})) for obj, typ in problem.objects.items()}
        self._schemas = {}
        for name, schema in domain.schemas.items():
            params = [p for p, _ in schema.params]
            self._schemas[name] = _Compiled(
                tuple(t for _, t in schema.params),
                _compile(schema.pre, params),
                _compile(schema.add, params),
                _compile(schema.delete, params),
            )
        self._goal = frozenset(problem.goal)
        self.state: set[Atom] = set(problem.init)

    def reset(self) -> None:
        self.state = set(self.problem.init)

    def unmet(self, action: str, args: Sequence[str]) -> Unmet:
        """Why the ground action is not applicable now (an empty :class:`Unmet` when it is).

        :raises ValueError: for an action the domain does not have, or a wrong number of arguments.
        """
        compiled = self._schemas.get(action)
        if compiled is None or len(args) != len(compiled.types):
            raise ValueError(f"{action}({', '.join(args)}) is not an action of the domain with its arguments")
        unknown = tuple(arg for arg in args if arg not in self._kinds)
        known = [(arg, typ) for arg, typ in zip(args, compiled.types) if arg in self._kinds]
        wrong = tuple((arg, typ) for arg, typ in known if typ not in self._kinds[arg])
        if unknown or wrong:
            return Unmet(unknown=unknown, wrong_type=wrong)
        return Unmet(atoms=tuple(atom for atom in _ground(compiled.pre, args) if atom not in self.state))

    def apply(self, action: str, args: Sequence[str]) -> Unmet:
        """Apply the ground action if it is applicable (delete, then add); what kept it from applying (empty:
        it applied).

        :raises ValueError: as :meth:`unmet`.
        """
        unmet = self.unmet(action, args)
        if not unmet:
            compiled = self._schemas[action]
            self.state.difference_update(_ground(compiled.delete, args))
            self.state.update(_ground(compiled.add, args))
        return unmet

    def goal_fraction(self) -> float:
        return len(self._goal & self.state) / len(self._goal)

    def goal_reached(self) -> bool:
        return self._goal <= self.state
