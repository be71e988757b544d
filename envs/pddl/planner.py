"""The expert: Fast Downward (the driver shipped inside ``up_fast_downward``) on normalised PDDL.

The planner never sees the original files: the domain and problem are written back out from the
loaded model (canonical section order, ``:typing`` declared, constants not repeated as objects,
predicate arguments untyped since STRIPS never type-checks atoms), so every quirk the loader
accepts is one the planner accepts too, and the plan is for exactly the task the simulator runs.
"""

from __future__ import annotations

import importlib.resources
import subprocess
import sys
import tempfile
from pathlib import Path

from .model import Atom, Domain, Problem

FD_ALIAS = "lama-first"  # greedy search with FF + landmarks: solves all benchmark barman in seconds
DEFAULT_TIMEOUT_S = 120.0


class PlannerError(RuntimeError):
    """The planner found no plan (unsolvable, timed out, or failed)."""


def _atom(atom: Atom) -> str:
    return "(" + " ".join(atom) + ")"


def _typed(names: dict[str, str], typed: bool) -> str:
    if not typed:
        return " ".join(names)
    return " ".join(f"{n} - {t}" for n, t in names.items())


def domain_pddl(domain: Domain) -> str:
    lines = [f"(define (domain {domain.name})", "(:requirements :strips" + (" :typing)" if domain.typed else ")")]
    if domain.typed:
        lines.append("(:types " + " ".join(f"{t} - {p}" for t, p in domain.types.items()) + ")")
    if domain.constants:
        lines.append("(:constants " + _typed(domain.constants, domain.typed) + ")")
    preds = " ".join("(" + " ".join([name, *("?" + v for v in args)]) + ")" for name, args in domain.predicates.items())
    lines.append(f"(:predicates {preds})")
    for schema in domain.schemas.values():
        params = _typed({"?" + p: t for p, t in schema.params}, domain.typed)
        effect = [_atom(a) for a in schema.add] + [f"(not {_atom(a)})" for a in schema.delete]
        lines += [
            f"(:action {schema.name}",
            f" :parameters ({params})",
            f" :precondition (and {' '.join(_atom(a) for a in schema.pre)})",
            f" :effect (and {' '.join(effect)}))",
        ]
    return "\n".join(lines) + ")\n"


def problem_pddl(domain: Domain, problem: Problem) -> str:
    objects = {o: t for o, t in problem.objects.items() if o not in domain.constants}
    return "\n".join(
        [
            f"(define (problem {problem.name}) (:domain {domain.name})",
            f"(:objects {_typed(objects, domain.typed)})",
            "(:init " + " ".join(_atom(a) for a in sorted(problem.init)) + ")",
            "(:goal (and " + " ".join(_atom(a) for a in problem.goal) + ")))",
        ]
    ) + "\n"


def fast_downward_plan(
    domain: Domain, problem: Problem, timeout_s: float = DEFAULT_TIMEOUT_S
) -> list[tuple[str, list[str]]]:
    """A plan as (PDDL action name, object names); raises PlannerError when none is found."""
    driver = importlib.resources.files("up_fast_downward").joinpath("downward/fast-downward.py")
    where = problem.path or problem.name
    with tempfile.TemporaryDirectory(prefix="learnact-fd-") as tmp, importlib.resources.as_file(driver) as fd:
        work = Path(tmp)
        (work / "domain.pddl").write_text(domain_pddl(domain))
        (work / "problem.pddl").write_text(problem_pddl(domain, problem))
        cmd = [sys.executable, str(fd), "--alias", FD_ALIAS, "--plan-file", "plan",
               "domain.pddl", "problem.pddl"]
        try:
            run = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise PlannerError(f"{where}: Fast Downward found no plan within {timeout_s:.0f} s") from None
        plan_file = work / "plan"
        if run.returncode != 0 or not plan_file.exists():
            # exit codes: https://www.fast-downward.org/ExitCodes (11/12: unsolvable)
            tail = (run.stdout + run.stderr).strip().splitlines()[-3:]
            raise PlannerError(
                f"{where}: Fast Downward found no plan (exit code {run.returncode}): {' | '.join(tail)}"
            )
        steps = []
        for line in plan_file.read_text().splitlines():
            line = line.strip()
            if line.startswith("("):
                name, *args = line.strip("()").split()
                steps.append((name.lower(), [a.lower() for a in args]))
        return steps

