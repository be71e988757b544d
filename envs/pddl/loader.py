"""Read domain and problem files with the ``pddl`` library into :mod:`.model` records.

Real benchmark files have quirks the library rejects, so the text is normalised minimally first:

* the AgentBoard tyreworld domain declares ``:types`` without ``(:requirements :typing)`` and puts
  ``:constants`` after ``:predicates``; the library's grammar wants the IPC section order and the
  requirement, so sections are put back in the canonical order and ``:typing`` is added;
* its problems repeat the domain constants (``wrench jack pump - tool``) as objects: accepted when
  the types agree;
* its ``in`` predicate declares its argument types swapped with respect to every use, so atoms are
  checked for predicate and arity only (STRIPS never type-checks atoms; action parameters are).

Only STRIPS with typing is supported: preconditions and goals are conjunctions of atoms, effects
conjunctions of atoms and negated atoms. Anything else is a :class:`PddlError` naming the construct.
"""

from __future__ import annotations

import re
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from pddl.logic.base import And, Not
from pddl.logic.predicates import Predicate
from pddl.logic.terms import Variable
from pddl.parser.domain import DomainParser
from pddl.parser.problem import ProblemParser

from learnact.actions.files import read_bounded

from .model import ROOT_TYPE, Atom, Domain, PddlError, Problem, Schema

# Building a parser compiles its grammar (~50 ms); parsing with a built one takes ~2 ms. The
# parsers keep state while transforming, so each thread gets its own.
_parsers = threading.local()
_SECTION_ORDER = (":requirements", ":types", ":constants", ":predicates", ":functions")
_MAX_FILE_BYTES = 5_000_000


def read_text(path: Path, what: str) -> str:
    """The text of a PDDL file: a regular file (never a FIFO or device), refused past the size limit.

    :raises PddlError: when it is missing, unreadable, too large or not UTF-8.
    """
    try:
        return read_bounded(path, _MAX_FILE_BYTES).decode("utf-8")
    except FileNotFoundError:
        raise PddlError(f"{path}: {what} file not found") from None
    except UnicodeDecodeError as exc:
        raise PddlError(f"{path}: {what} file is not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise PddlError(f"{path}: cannot read the {what} file ({exc.strerror or exc})") from None


def _strip_comments(text: str) -> str:
    return re.sub(r";[^\n]*", "", text)


def _top_level_groups(body: str, where: str) -> list[str]:
    """Split ``body`` into its parenthesised groups at depth 0 (text between them must be blank)."""
    groups, depth, start = [], 0, 0
    for i, ch in enumerate(body):
        if ch == "(":
            if depth == 0:
                if body[start:i].strip():
                    raise PddlError(f"{where}: unexpected text {body[start:i].strip()[:40]!r}")
                start = i
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise PddlError(f"{where}: unbalanced parentheses (a ')' closes nothing)")
            if depth == 0:
                groups.append(body[start : i + 1])
                start = i + 1
    if depth != 0:
        raise PddlError(f"{where}: unbalanced parentheses ({depth} '(' never closed)")
    if body[start:].strip():
        raise PddlError(f"{where}: unexpected text {body[start:].strip()[:40]!r}")
    return groups


def normalise_domain_text(text: str, where: str) -> str:
    """Canonical section order and ``:typing`` when types are declared; unchanged text otherwise."""
    text = _strip_comments(text)
    outer = _top_level_groups(text, where)
    if len(outer) != 1 or not re.match(r"\(\s*define\b", outer[0], re.IGNORECASE):
        raise PddlError(f"{where}: expected one '(define (domain NAME) ...)' form")
    sections = _top_level_groups(outer[0][outer[0].index("(", 1) : -1], where)

    def key(section: str) -> str:
        match = re.match(r"\(\s*(:?[\w-]+)", section)
        return match.group(1).lower() if match else ""

    keys = [key(s) for s in sections]
    changed = False
    if ":types" in keys:
        if ":requirements" not in keys:
            sections.insert(1, "(:requirements :strips :typing)")
            keys.insert(1, ":requirements")
            changed = True
        else:
            i = keys.index(":requirements")
            if not re.search(r":typing\b", sections[i], re.IGNORECASE):
                sections[i] = sections[i][:-1] + " :typing)"
                changed = True

    def rank(k: str) -> int:
        return _SECTION_ORDER.index(k) + 1 if k in _SECTION_ORDER else len(_SECTION_ORDER) + 1

    # sections[0] is "(domain NAME)"; the sort is stable, so actions keep their file order.
    ordered = [sections[0]] + sorted(sections[1:], key=lambda s: rank(key(s)))
    if ordered == sections and not changed:
        return text
    return "(define " + "\n".join(ordered) + ")\n"


def _short(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return re.sub(r"\s+", " ", " ".join(lines[:3])) if lines else type(exc).__name__


def _term(term: Any) -> str:
    name = str(term.name).lower()
    return "?" + name if isinstance(term, Variable) else name


def _atom(formula: Predicate) -> Atom:
    return (str(formula.name).lower(), *(_term(t) for t in formula.terms))


def _single_type(tags: frozenset, where: str, name: str) -> str:
    if len(tags) > 1:
        raise PddlError(f"{where}: '{name}' has an (either ...) type, which is not supported")
    return str(next(iter(tags))).lower() if tags else ROOT_TYPE


def _conjunction(formula: Any) -> list[Any]:
    if formula is None:
        return []
    return list(formula.operands) if isinstance(formula, And) else [formula]


def _positive_atoms(formula: Any, where: str, what: str) -> tuple[Atom, ...]:
    atoms = []
    for part in _conjunction(formula):
        if not isinstance(part, Predicate):
            raise PddlError(f"{where}: {what} must be a conjunction of atoms (STRIPS); found '{part}'")
        atoms.append(_atom(part))
    return tuple(atoms)


def _check_atom(atom: Atom, predicates: dict[str, tuple[str, ...]], where: str) -> None:
    if atom[0] not in predicates:
        raise PddlError(f"{where}: predicate '{atom[0]}' is not declared in the domain")
    if len(atom) - 1 != len(predicates[atom[0]]):
        raise PddlError(
            f"{where}: predicate '{atom[0]}' takes {len(predicates[atom[0]])} argument(s), "
            f"{len(atom) - 1} given in ({' '.join(atom)})"
        )


def _schema(action: Any, domain: Domain, where: str) -> Schema:
    name = str(action.name).lower()
    here = f"{where}: action '{name}'"
    params = tuple((str(p.name).lower(), _single_type(p.type_tags, here, "?" + str(p.name))) for p in action.parameters)
    pre = _positive_atoms(action.precondition, here, "the precondition")
    add: list[Atom] = []
    delete: list[Atom] = []
    for part in _conjunction(action.effect):
        if isinstance(part, Predicate):
            add.append(_atom(part))
        elif isinstance(part, Not) and isinstance(part.argument, Predicate):
            delete.append(_atom(part.argument))
        else:
            raise PddlError(f"{here}: the effect must be a conjunction of atoms and negated atoms; found '{part}'")
    known = {"?" + p for p, _ in params}
    for atom in (*pre, *add, *delete):
        _check_atom(atom, domain.predicates, here)
        for arg in atom[1:]:
            if arg.startswith("?") and arg not in known:
                raise PddlError(f"{here}: variable '{arg}' is not a parameter")
            if not arg.startswith("?") and arg not in domain.constants:
                raise PddlError(f"{here}: '{arg}' is neither a parameter nor a domain constant")
    for _, typ in params:
        if typ != ROOT_TYPE and typ not in domain.types:
            raise PddlError(f"{here}: parameter type '{typ}' is not declared in :types")
    return Schema(name, params, pre, tuple(add), tuple(delete))


def _parse(kind: str, text: str, path: Path) -> Any:
    """Parse with this thread's parser of ``kind`` ("domain" or "problem"); any library failure
    means the file cannot be used."""
    parser = getattr(_parsers, kind, None)
    if parser is None:
        parser = DomainParser() if kind == "domain" else ProblemParser()
        setattr(_parsers, kind, parser)
    try:
        return parser(text)
    except Exception as exc:  # noqa: BLE001 - the library raises many types
        raise PddlError(f"{path}: not a valid PDDL {kind}: {_short(exc)}") from None


def load_domain(path: Path) -> Domain:
    """The STRIPS domain of a PDDL domain file.

    :raises PddlError: for a file that cannot be read, parsed or used (the message names the construct).
    """
    text = normalise_domain_text(read_text(path, "domain"), str(path))
    parsed = _parse("domain", text, path)
    where = str(path)
    types = {
        str(t).lower(): (str(parent).lower() if parent else ROOT_TYPE)
        for t, parent in parsed.types.items()
        if str(t).lower() != ROOT_TYPE
    }
    constants = {str(c.name).lower(): _single_type(c.type_tags, where, str(c.name)) for c in parsed.constants}
    predicates = {str(p.name).lower(): tuple(str(t.name).lower() for t in p.terms) for p in parsed.predicates}
    domain = Domain(str(parsed.name).lower(), path, types, predicates, constants, {})
    schemas = {s.name: s for s in (_schema(a, domain, where) for a in parsed.actions)}
    if not schemas:
        raise PddlError(f"{path}: the domain declares no actions")
    # the library keeps actions in a set; restore the file order so primitives list stably
    order = [m.lower() for m in re.findall(r"\(\s*:action\s+([^\s()]+)", text, re.IGNORECASE)]
    order += sorted(set(schemas) - set(order))
    return replace(domain, schemas={n: schemas[n] for n in order if n in schemas})


def load_problem(path: Path, domain: Domain) -> Problem:
    """A PDDL problem file of ``domain``.

    :raises PddlError: for a file that cannot be read, parsed or used with ``domain``.
    """
    text = _strip_comments(read_text(path, "problem"))
    parsed = _parse("problem", text, path)
    where = str(path)
    if str(parsed.domain_name).lower() != domain.name:
        raise PddlError(
            f"{path}: the problem is for domain '{parsed.domain_name}' but the domain file "
            f"{domain.path} defines '{domain.name}'"
        )
    objects = dict(domain.constants)
    for obj in parsed.objects:
        name, typ = str(obj.name).lower(), _single_type(obj.type_tags, where, str(obj.name))
        if name in objects and objects[name] != typ:
            raise PddlError(
                f"{path}: object '{name}' is declared as '{typ}' but is a domain constant of type '{objects[name]}'"
            )
        if typ != ROOT_TYPE and typ not in domain.types:
            raise PddlError(f"{path}: object '{name}' has undeclared type '{typ}'")
        objects[name] = typ
    init = []
    for fact in parsed.init:
        if not isinstance(fact, Predicate):
            raise PddlError(f"{path}: the initial state may only hold atoms; found '{fact}'")
        init.append(_atom(fact))
    goal = _positive_atoms(parsed.goal, where, "the goal")
    if not goal:
        raise PddlError(f"{path}: the goal is empty")
    for atom in (*init, *goal):
        _check_atom(atom, domain.predicates, where)
        for arg in atom[1:]:
            if arg not in objects:
                raise PddlError(f"{path}: unknown object '{arg}' in ({' '.join(atom)})")
    return Problem(str(parsed.name).lower(), path, objects, frozenset(init), goal)
