"""Sandbox overhead on whole episodes: `python benchmarks/eval_bench.py [--runtime runc|runsc] [--json]
[--executor ray [--workers N]]`, and scaling over cores: `--scaling 1,2,4,8,16 [--seeds K] [--backend B]`.

The planner expert over all 60 built-in PDDL problems (tyreworld, blockworld, barman, gripper), once
with every step run as checked code in the Docker sandbox (the product path, `run_episode`), and once
with the same episodes executing each step's code in this process (trusted code, measurement only).
Both include the planner's time, which is part of an expert episode. One worker each, one run:
{"sandboxed_s", "in_process_s", "ratio", "episodes"}. Target: ratio <= 1.5.

With `--executor ray`, the same 60 episodes also run as evaluation runs (one per domain, run
directories in a temporary folder) on the local executor and on a local Ray instance, both with
`--workers` episodes at a time: {"local_s", "ray_s", "ray_ratio" (ray_s / local_s), "ray_startup_s"
(starting Ray, not in ray_s), "workers"}. Target: ray_ratio <= 1.3.

With `--scaling N1,N2,...` only the scaling is measured: the 60 problems x `--seeds` seeds (default 10, as
a paper-scale batch, so that start-up is amortised) as four evaluation runs on one `ProcessExecutor` per
worker count (its workers' start-up included), each sandboxed with `--backend` (default docker; give
`process` where no Docker engine runs). Per worker count: {"workers", "wall_s", "episodes_per_s",
"speed_up" (over the first count), "cores_busy" (CPU seconds of this process and every process it
reaped, over the wall: the workers, planners and process or bwrap sandboxes; Docker containers run under
the engine and are not counted, so take CPU figures with --backend process), "cpu_per_episode_s",
"cpu_bound_episodes_per_s" (the first count's throughput times the workers, capped by the cores over the
first count's CPU per episode) and "of_bound"}; every episode must be solved at every count.
Targets on 16 cores, at 16 workers: speed_up >= 10 and of_bound about 0.9.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from learnact.actions.models import CodeKind
from learnact.engine import EpisodeSpec, EvalConfig, RunSettings, run_episode, run_evaluation
from learnact.engine.runs.executor import Executor, ExecutorName, LocalExecutor
from learnact.engine.runs.process_executor import ProcessExecutor
from learnact.envs import EnvSpec, PrimitiveSpec
from learnact.envs.pddl import DOMAINS, PddlEnv
from learnact.sandbox import (
    BackendName,
    ExecutionResult,
    ExecutionStatus,
    PrimitiveCall,
    RuntimeName,
    Sandbox,
    SandboxConfig,
)

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


def run_all_as_evaluations(
    executor: Executor, config: SandboxConfig, workers: int, folder: Path, seeds: int = 1
) -> tuple[float, int]:
    """Seconds for every built-in episode (with each of ``seeds`` seeds) as one evaluation run per domain on
    ``executor``, and how many succeeded."""
    solved = 0
    started = time.perf_counter()
    for domain in DOMAINS:
        env = PddlEnv.builtin(domain)
        settings = RunSettings(env=EnvSpec(name=env.name), max_steps=MAX_STEPS, sandbox=config)
        tasks = tuple(t.id for t in env.tasks())
        evaluation = EvalConfig(run=settings, tasks=tasks, seeds=tuple(range(seeds)), workers=workers)
        summary = run_evaluation(evaluation, folder / domain, executor=executor)
        solved += sum(row.success for row in summary.results)
    return time.perf_counter() - started, solved


def compare_executors(config: SandboxConfig, workers: int, episodes: int) -> dict[str, float]:
    """The local executor and Ray on the same episodes with the same parallelism."""
    from learnact.engine.runs.ray_executor import RayExecutor

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


def cpu_seconds() -> float:
    """CPU seconds (user and system) of this process and of every descendant it or they reaped."""
    own, reaped = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime


def scaling(config: SandboxConfig, counts: Sequence[int], seeds: int) -> list[dict[str, float]]:
    """Throughput of the process executor at each worker count of ``counts`` (see the module docstring)."""
    rows: list[dict[str, float]] = []
    cores = os.cpu_count() or 1
    for workers in counts:
        with tempfile.TemporaryDirectory(prefix="eval-bench-") as folder:
            cpu_before, started = cpu_seconds(), time.perf_counter()
            with ProcessExecutor() as executor:
                _, solved = run_all_as_evaluations(executor, config, workers, Path(folder), seeds)
            wall_s, cpu_s = time.perf_counter() - started, cpu_seconds() - cpu_before  # workers reaped at close
        episodes = 60 * seeds
        if solved != episodes:
            raise SystemExit(f"at {workers} workers the expert solved {solved} of {episodes} episodes")
        rate = episodes / wall_s
        first = rows[0] if rows else None
        base_rate = first["episodes_per_s"] if first else rate
        base_cpu = first["cpu_per_episode_s"] if first else cpu_s / episodes
        bound = min(base_rate * workers / (first["workers"] if first else workers), cores / base_cpu)
        rows.append({
            "workers": workers, "wall_s": round(wall_s, 2), "episodes_per_s": round(rate, 3),
            "speed_up": round(rate / base_rate, 3), "cores_busy": round(cpu_s / wall_s, 2),
            "cpu_per_episode_s": round(cpu_s / episodes, 4), "cpu_bound_episodes_per_s": round(bound, 3),
            "of_bound": round(rate / bound, 3),
        })  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", choices=[r.value for r in RuntimeName], default=RuntimeName.runc.value)
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    parser.add_argument(
        "--executor", choices=[ExecutorName.threads.value, ExecutorName.ray.value], default=ExecutorName.threads.value,
        help="ray: also compare the threads of the local executor and Ray on evaluation runs",
    )  # fmt: skip
    parser.add_argument("--workers", type=int, default=2, help="episodes at a time of both executors (--executor ray)")
    parser.add_argument("--scaling", help="worker counts (1,2,4): only the process executor's throughput at each")
    parser.add_argument("--seeds", type=int, default=10, help="--scaling: seeds per problem (60 problems each)")
    parser.add_argument("--backend", choices=[b.value for b in BackendName], default=BackendName.docker.value)
    args = parser.parse_args()

    config = SandboxConfig(runtime=args.runtime, backend=args.backend)
    if args.scaling:
        counts = [int(count) for count in args.scaling.split(",")]
        report = {"cores": os.cpu_count(), "episodes": 60 * args.seeds, "backend": args.backend,
                  "scaling": scaling(config, counts, args.seeds)}  # fmt: skip
        print(json.dumps(report) if args.json else json.dumps(report, indent=2))
        return
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
