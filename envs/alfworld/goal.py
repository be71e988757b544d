"""Progress rate of an ALFWorld game, computed from the game's own PDDL goal.

ALFWorld goals are conjunctions of existentially quantified conjunctions, e.g. for "put a clean
knife on a countertop"::

    (exists (?r - receptacle) (exists (?o - object)
        (and (cleanable ?o) (objectType ?o ButterKnifeType) (receptacleType ?r CounterTopType)
             (isClean ?o) (inReceptacle ?o ?r))))

Definition. The goal is put in prenex form (each quantified variable renamed apart, so the
top-level ``exists`` clauses keep their own variables). Its literals split in two:

- *conditions*: atoms of fluent predicates, those that some action of the game's PDDL domain
  changes in its effect (``isClean``, ``inReceptacle``, ``isToggled``, ``holds``, ``atLocation``...);
- *constraints*: atoms of static predicates (``objectType``, ``receptacleType``, ``cleanable``,
  ``receptacleAtLocation``...) and inequalities ``(not (= ?a ?b))``. They only say which objects
  may be bound to the variables and are not counted.

The progress of a state is the largest fraction ``|S| / |conditions|`` over the sets S of conditions
for which one binding of the variables satisfies every constraint and every condition in S in that
state (the facts of the game engine). The progress rate of an episode is the largest progress of any
state reached, reset included (AgentBoard's "largest fraction of goal conditions that held at any
step"). A full set S is exactly the goal, so the progress is 1.0 when, and only when, the game is
won. Conditions that already hold at reset count (for examine tasks the lamp already stands in its
receptacle), as goal facts true at the start count in AgentBoard's PDDL progress rate. A put task has a
single condition, so its progress is 0 or 1; clean/heat/cool have two, puttwo two, examine four.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from functools import lru_cache
from itertools import combinations

from pydantic import BaseModel, ConfigDict

from learnact.actions.errors import LearnactError

Atom = tuple[str, tuple[str, ...]]  # predicate, arguments (lower case; variables start with '?')


class GoalError(LearnactError):
    """A goal or domain this progress measure cannot read."""


class Goal(BaseModel):
    model_config = ConfigDict(frozen=True)
    conditions: tuple[Atom, ...]
    constraints: tuple[Atom, ...]
    distinct: tuple[tuple[str, str], ...]

    def progress(self, facts: Iterable[Atom]) -> float:
        """The largest satisfiable fraction of the conditions in the state made of ``facts``."""
        index: dict[str, list[tuple[str, ...]]] = defaultdict(list)
        for predicate, args in facts:
            index[predicate].append(args)
        total = len(self.conditions)
        for size in range(total, 0, -1):
            for chosen in combinations(self.conditions, size):
                if _satisfiable(list(self.constraints) + list(chosen), self.distinct, index, {}):
                    return size / total
        return 0.0


def _parse(text: str, what: str) -> list:
    """The nested lists of a PDDL text, lower case, comments dropped.

    A reader of its own: fast-downward's (the game's parser) parses ``sys.argv`` when imported.
    """
    text = "\n".join(line.split(";", 1)[0] for line in text.lower().splitlines())
    stack: list[list] = [[]]
    for token in re.findall(r"[()]|[^\s()]+", text):
        if token == "(":
            stack.append([])
        elif token == ")":
            if len(stack) == 1:
                raise GoalError(f"cannot parse the {what}: unbalanced ')'")
            done = stack.pop()
            stack[-1].append(done)
        else:
            stack[-1].append(token)
    if len(stack) != 1 or len(stack[0]) != 1 or not isinstance(stack[0][0], list):
        raise GoalError(f"cannot parse the {what}: expected one balanced (...) expression")
    return stack[0][0]


def _section(tree: list, key: str, what: str) -> list:
    for item in tree:
        if isinstance(item, list) and item and item[0] == key:
            return item
    raise GoalError(f"the {what} has no {key} section")


@lru_cache(maxsize=8)
def fluent_predicates(domain_pddl: str) -> frozenset[str]:
    """Predicates that some action's effect changes (all games share one domain: cached)."""
    fluents: set[str] = set()

    def collect(effect: list) -> None:
        head = effect[0] if effect else None
        if head == "and":
            for part in effect[1:]:
                collect(part)
        elif head in ("forall", "when"):
            collect(effect[2])
        elif head == "not":
            collect(effect[1])
        elif head in ("increase", "decrease", "assign"):
            return
        elif isinstance(head, str):
            fluents.add(head)

    for item in _parse(domain_pddl, "PDDL domain"):
        if isinstance(item, list) and item and item[0] == ":action":
            keys = item[2::2]
            if ":effect" in keys:
                collect(item[2 + 2 * keys.index(":effect") + 1])
    if not fluents:
        raise GoalError("the PDDL domain has no action effects")
    return frozenset(fluents)


def parse_goal(problem_pddl: str, domain_pddl: str) -> Goal:
    """The conditions and constraints of the problem's ``:goal`` (see the module doc)."""
    goal = _section(_parse(problem_pddl, "PDDL problem"), ":goal", "PDDL problem")
    if len(goal) != 2:
        raise GoalError("the :goal section must hold one formula")
    fluents = fluent_predicates(domain_pddl)
    atoms: list[Atom] = []
    distinct: list[tuple[str, str]] = []
    counter = iter(range(1_000_000))

    def term(token: object, scope: dict[str, str]) -> str:
        if not isinstance(token, str):
            raise GoalError(f"unexpected term {token!r} in the goal")
        if token.startswith("?"):
            if token not in scope:
                raise GoalError(f"free variable {token} in the goal")
            return scope[token]
        return token

    def walk(formula: object, scope: dict[str, str]) -> None:
        if not isinstance(formula, list) or not formula or not isinstance(formula[0], str):
            raise GoalError(f"unexpected goal formula {formula!r}")
        head = formula[0]
        if head == "and":
            for part in formula[1:]:
                walk(part, scope)
        elif head == "exists" and len(formula) == 3 and isinstance(formula[1], list):
            inner = dict(scope)
            for token in formula[1]:
                if isinstance(token, str) and token.startswith("?"):
                    inner[token] = f"{token}#{next(counter)}"  # rename apart
            walk(formula[2], inner)
        elif head == "not" and isinstance(formula[1], list) and formula[1][:1] == ["="]:
            _, left, right = formula[1]
            distinct.append((term(left, scope), term(right, scope)))
        elif head in ("or", "not", "forall", "imply", "="):
            raise GoalError(f"unsupported '{head}' in the goal: only and/exists/atoms/inequalities")
        else:
            atoms.append((head, tuple(term(t, scope) for t in formula[1:])))

    walk(goal[1], {})
    conditions = tuple(a for a in atoms if a[0] in fluents)
    if not conditions:
        raise GoalError("the goal has no condition that an action can change")
    constraints = tuple(a for a in atoms if a[0] not in fluents)
    return Goal(conditions=conditions, constraints=constraints, distinct=tuple(distinct))


def _satisfiable(
    atoms: list[Atom],
    distinct: tuple[tuple[str, str], ...],
    index: dict[str, list[tuple[str, ...]]],
    binding: dict[str, str],
) -> bool:
    """Whether one extension of ``binding`` makes every atom a fact and keeps ``distinct`` apart."""
    for left, right in distinct:
        a, b = binding.get(left, left), binding.get(right, right)
        if a == b and not a.startswith("?"):
            return False
    if not atoms:
        return True

    def bound(atom: Atom) -> int:
        return sum(1 for t in atom[1] if not t.startswith("?") or t in binding)

    atom = max(atoms, key=bound)  # most constrained first
    rest = [a for a in atoms if a is not atom]
    for args in index.get(atom[0], ()):
        if len(args) != len(atom[1]):
            continue
        extended = dict(binding)
        for term, value in zip(atom[1], args):
            if term.startswith("?"):
                if extended.setdefault(term, value) != value:
                    break
            elif term != value:
                break
        else:
            if _satisfiable(rest, distinct, index, extended):
                return True
    return False
