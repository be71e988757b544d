"""Sandbox overhead on whole episodes: `python benchmarks/eval_bench.py [--runtime runc|runsc] [--json]`.

The planner expert over all 60 built-in PDDL problems (tyreworld, blockworld, barman, gripper), once
with every step run as checked code in the Docker sandbox (the product path, `run_episode`), and once
with the same episodes executing each step's code in this process (trusted code, measurement only).
Both include the planner's time, which is part of an expert episode. One worker each, one run:
{"sandboxed_s", "in_process_s", "ratio", "episodes"}. Target: ratio <= 1.5.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from learnact.engine import EpisodeSpec, RunSettings, run_episode
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

    def execute(self, code: str) -> ExecutionResult:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", choices=[r.value for r in RuntimeName], default=RuntimeName.runc.value)
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
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
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
