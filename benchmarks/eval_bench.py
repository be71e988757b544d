"""Sandbox overhead on whole episodes: `python benchmarks/eval_bench.py [--runtime runc|runsc] [--json]
[--executor ray [--workers N]]`.

The planner expert over all 60 built-in PDDL problems (tyreworld, blockworld, barman, gripper), once
with every step run as checked code in the Docker sandbox (the product path, `run_episode`), and once
with the same episodes executing each step's code in this process (trusted code, measurement only).
Both include the planner's time, which is part of an expert episode. One worker each, one run:
{"sandboxed_s", "in_process_s", "ratio", "episodes"}. Target: ratio <= 1.5.

With `--executor ray`, the same 60 episodes also run as evaluation runs (one per domain, run
directories in a temporary folder) on the local executor and on a local Ray instance, both with
`--workers` episodes at a time: {"local_s", "ray_s", "ray_ratio" (ray_s / local_s), "ray_startup_s"
(starting Ray, not in ray_s), "workers"}. Target: ray_ratio <= 1.3.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from learnact.actions.models import CodeKind
from learnact.engine import EpisodeSpec, EvalConfig, RunSettings, run_episode, run_evaluation
from learnact.engine.executor import Executor, ExecutorName, LocalExecutor
from learnact.envs import EnvSpec, PrimitiveSpec
from learnact.envs.pddl import DOMAINS, PddlEnv
from learnact.sandbox import ExecutionResult, ExecutionStatus, PrimitiveCall, RuntimeName, Sandbox, SandboxConfig

MAX_STEPS = 100


class InProcessSession:
    """Runs a step's code with exec() in this process: no isolation at all, a baseline only."""

    def __init__(self, primitives: Sequence[PrimitiveSpec], handler: Callable[[str, list], str]) -> None:
        self._namespace: dict[str, Any] = {}
        self._calls: list[PrimitiveCall] = []
        for spec in primitives:
            self._namespace[spec.name] = self._stub(spec.name, handler)

    def _stub(self, name: str, handler: Callable[[str, list], str]) -> Callable[..., str]:
        def call(*args: Any) -> str:
            observation = handler(name, list(args))
            self._calls.append(PrimitiveCall(name=name, args=list(args), observation=observation))
            return observation

        return call

    def execute(self, code: str, kind: CodeKind = CodeKind.agent_snippet) -> ExecutionResult:
        started = time.perf_counter()
        self._calls = []
        exec(code, self._namespace)  # trusted: the expert's own calls
        return ExecutionResult(status=ExecutionStatus.ok, calls=self._calls, duration_s=time.perf_counter() - started)


class InProcessSandbox:
    @contextmanager
    def session(
        self, primitives: Sequence[PrimitiveSpec], handler: Callable[[str, list], str]
    ) -> Iterator[InProcessSession]:
        yield InProcessSession(primitives, handler)


def run_all(sandbox: Any, config: SandboxConfig) -> tuple[float, int, int]:
    """Seconds for every built-in episode, the number of episodes and how many succeeded."""
    episodes = solved = 0
    started = time.perf_counter()
    for domain in DOMAINS:
        env = PddlEnv.builtin(domain)
        for task in env.tasks():
            settings = RunSettings(env=EnvSpec(name=env.name), max_steps=MAX_STEPS, sandbox=config)
            spec = EpisodeSpec(run=settings, task=task.id)
            record = run_episode(spec, env=env, sandbox=sandbox)
            episodes += 1
            solved += record.success
    return time.perf_counter() - started, episodes, solved


def run_all_as_evaluations(executor: Executor, config: SandboxConfig, workers: int, folder: Path) -> tuple[float, int]:
    """Seconds for every built-in episode as one evaluation run per domain on ``executor``, and how many
    succeeded."""
    solved = 0
    started = time.perf_counter()
    for domain in DOMAINS:
        env = PddlEnv.builtin(domain)
        settings = RunSettings(env=EnvSpec(name=env.name), max_steps=MAX_STEPS, sandbox=config)
        evaluation = EvalConfig(run=settings, tasks=tuple(t.id for t in env.tasks()), workers=workers)
        summary = run_evaluation(evaluation, folder / domain, executor=executor)
        solved += sum(row.success for row in summary.results)
    return time.perf_counter() - started, solved


def compare_executors(config: SandboxConfig, workers: int, episodes: int) -> dict[str, float]:
    """The local executor and Ray on the same episodes with the same parallelism."""
    from learnact.engine.ray_executor import RayExecutor

    with tempfile.TemporaryDirectory(prefix="eval-bench-") as folder:
        with LocalExecutor() as local:
            local_s, solved_local = run_all_as_evaluations(local, config, workers, Path(folder) / "local")
        with RayExecutor() as ray:
            started = time.perf_counter()
            ray.connect()
            ray_startup_s = time.perf_counter() - started
            ray_s, solved_ray = run_all_as_evaluations(ray, config, workers, Path(folder) / "ray")
    if solved_local != episodes or solved_ray != episodes:
        raise SystemExit(
            f"the expert solved {solved_local} (local executor) and {solved_ray} (ray) of {episodes} episodes"
        )
    return {
        "local_s": round(local_s, 2),
        "ray_s": round(ray_s, 2),
        "ray_ratio": round(ray_s / local_s, 3),
        "ray_startup_s": round(ray_startup_s, 2),
        "workers": workers,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", choices=[r.value for r in RuntimeName], default=RuntimeName.runc.value)
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    parser.add_argument(
        "--executor", choices=[e.value for e in ExecutorName], default=ExecutorName.local.value,
        help="ray: also compare the local executor and Ray on evaluation runs",
    )  # fmt: skip
    parser.add_argument("--workers", type=int, default=2, help="episodes at a time of both executors (--executor ray)")
    args = parser.parse_args()

    config = SandboxConfig(runtime=args.runtime)
    in_process_s, episodes, solved_in_process = run_all(InProcessSandbox(), config)
    with Sandbox(config) as sandbox:
        sandboxed_s, _, solved_sandboxed = run_all(sandbox, config)
    if solved_sandboxed != episodes or solved_in_process != episodes:
        raise SystemExit(
            f"the expert solved {solved_sandboxed} (sandboxed) and {solved_in_process} (in process) "
            f"of {episodes} episodes; the comparison needs every episode solved"
        )
    result = {
        "runtime": args.runtime,
        "sandboxed_s": round(sandboxed_s, 2),
        "in_process_s": round(in_process_s, 2),
        "ratio": round(sandboxed_s / in_process_s, 3),
        "episodes": episodes,
    }
    if args.executor == ExecutorName.ray.value:
        result |= compare_executors(config, args.workers, episodes)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
