"""The expert: Fast Downward (the driver shipped inside ``up_fast_downward``) on normalised PDDL.

The planner never sees the original files: the domain and problem are written back out from the
loaded model (canonical section order, ``:typing`` declared, constants not repeated as objects,
predicate arguments untyped since STRIPS never type-checks atoms), so every quirk the loader
accepts is one the planner accepts too, and the plan is for exactly the task the simulator runs.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from functools import cache
from pathlib import Path

from learnact.actions.errors import LearnactError
from learnact.actions.processes import process_alive

from .model import Atom, Domain, Problem

log = logging.getLogger(__name__)
FD_ALIAS = "lama-first"  # greedy search with FF + landmarks: solves all benchmark barman in seconds
DEFAULT_TIMEOUT_S = 120.0
PLANNER_PACKAGE = "up_fast_downward"  # ships the driver script and the compiled planner


class PlannerError(LearnactError):
    """The planner found no plan for ``problem`` (a file or a problem name): ``reason`` says why
    (unsolvable, timed out, stopped, failed)."""

    def __init__(self, problem: str, reason: str) -> None:
        self.problem = problem
        self.reason = reason
        super().__init__(f"{problem}: {reason}")


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
    return (
        "\n".join(
            [
                f"(define (problem {problem.name}) (:domain {domain.name})",
                f"(:objects {_typed(objects, domain.typed)})",
                "(:init " + " ".join(_atom(a) for a in sorted(problem.init)) + ")",
                "(:goal (and " + " ".join(_atom(a) for a in problem.goal) + ")))",
            ]
        )
        + "\n"
    )


# The planner's working folders are named after their owner, ``learnact-fd-<pid>-<random>``, so that
# those of a killed process (which could not remove them) are recognised and swept by the next one.
WORKDIR_PREFIX = "learnact-fd-"
LEGACY_STALE_AFTER_S = 24 * 3600  # folders of older versions name no owner: swept when a day old
_swept = False
_sweep_lock = threading.Lock()


def sweep_stale_workdirs(root: str | None = None) -> int:
    """Remove the planner folders whose owning process no longer runs; return how many."""
    removed = 0
    root = root or tempfile.gettempdir()
    try:
        entries = list(os.scandir(root))
    except OSError as exc:
        log.debug("cannot sweep planner folders in %s: %s", root, exc)
        return 0
    for entry in entries:
        if not entry.name.startswith(WORKDIR_PREFIX):
            continue
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
            owner = entry.name[len(WORKDIR_PREFIX) :].split("-", 1)[0]
            if owner.isdigit():
                stale = int(owner) != os.getpid() and not process_alive(int(owner))
            else:
                stale = time.time() - entry.stat(follow_symlinks=False).st_mtime > LEGACY_STALE_AFTER_S
        except OSError as exc:
            log.debug("cannot sweep the planner folder %s: %s", entry.path, exc)
            continue
        if stale:
            shutil.rmtree(entry.path, ignore_errors=True)
            removed += 1
    if removed:
        log.info("removed %d planner folder(s) of processes that no longer run", removed)
    return removed


def _sweep_once() -> None:
    global _swept
    with _sweep_lock:
        if not _swept:
            _swept = True
            sweep_stale_workdirs()


_running: set[subprocess.Popen] = set()
_running_lock = threading.Lock()


def _kill_group(process: subprocess.Popen) -> None:
    if process.returncode is None:  # not reaped: its pid still names its process group
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _run_planner(cmd: list[str], cwd: Path, timeout_s: float, where: str) -> tuple[int, str]:
    """Run the driver in a process group of its own, so that a timeout or a stop ends its translator
    and search processes too (killing the driver alone would leave them running)."""
    with subprocess.Popen(
        cmd,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    ) as process:
        with _running_lock:
            _running.add(process)
        try:
            output, _ = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            process.communicate()
            raise PlannerError(where, f"Fast Downward found no plan within {timeout_s:.0f} s") from None
        except BaseException:
            _kill_group(process)
            raise
        finally:
            with _running_lock:
                _running.discard(process)
    return process.returncode, output


def stop_planners() -> None:
    """End every planner this process is running (their callers get a PlannerError): a run that is
    being stopped does not wait for a search that may take minutes."""
    with _running_lock:
        running = list(_running)
    for process in running:
        _kill_group(process)


@cache
def _driver_path() -> Path | None:
    spec = importlib.util.find_spec(PLANNER_PACKAGE)  # finds the package without running it
    if spec is None or not spec.submodule_search_locations:
        return None
    driver = Path(next(iter(spec.submodule_search_locations))) / "downward" / "fast-downward.py"
    return driver if driver.is_file() else None


def planner_driver(where: str) -> Path:
    """Fast Downward's driver script, shipped inside the ``up_fast_downward`` package. Found without importing
    that package: its import loads unified-planning, ConfigSpace and SciPy (over a second per process), none
    of which the planner needs.

    :raises PlannerError: when the package or its driver is not installed.
    """
    driver = _driver_path()
    if driver is None:
        raise PlannerError(where, f"Fast Downward's driver is not installed (the package {PLANNER_PACKAGE})")
    return driver


def fast_downward_plan(
    domain: Domain, problem: Problem, timeout_s: float = DEFAULT_TIMEOUT_S
) -> list[tuple[str, list[str]]]:
    """A plan as (PDDL action name, object names).

    :raises PlannerError: when none is found: unsolvable, not within ``timeout_s``, or the planner was
        stopped (:func:`stop_planners`) or failed.
    """
    where = str(problem.path or problem.name)
    fd = planner_driver(where)
    _sweep_once()
    prefix = f"{WORKDIR_PREFIX}{os.getpid()}-"
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        work = Path(tmp)
        (work / "domain.pddl").write_text(domain_pddl(domain))
        (work / "problem.pddl").write_text(problem_pddl(domain, problem))
        cmd = [sys.executable, str(fd), "--alias", FD_ALIAS, "--plan-file", "plan", "domain.pddl", "problem.pddl"]
        returncode, output = _run_planner(cmd, work, timeout_s, where)
        plan_file = work / "plan"
        if returncode != 0 or not plan_file.exists():
            if returncode < 0:
                raise PlannerError(where, f"Fast Downward was stopped (signal {-returncode})")
            # exit codes: https://www.fast-downward.org/ExitCodes (11/12: unsolvable)
            tail = output.strip().splitlines()[-3:]
            raise PlannerError(where, f"Fast Downward found no plan (exit code {returncode}): {' | '.join(tail)}")
        steps = []
        for line in plan_file.read_text().splitlines():
            line = line.strip()
            if line.startswith("("):
                name, *args = line.strip("()").split()
                steps.append((name.lower(), [a.lower() for a in args]))
        return steps
