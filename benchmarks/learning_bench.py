"""Does LearnAct help? `python benchmarks/learning_bench.py [--model local] [--seeds 0,1,2] [--json]`.

An experiment that can show the effect of learned actions, and its absence: for each seed, ``learnact learn``
learns a library on the seed's training tasks; then the learnact agent with that library and the act agent
without it (the control: the same prompts less the learned actions) are evaluated on the same test tasks,
which are none of the seed's training tasks (the only goals the learner was shown; the demonstration is a
problem outside the task set). Both evaluations use request seed 0 and the same step budget, so the seeds
differ by what was learned. Every command is the CLI's own (run as subprocesses, Docker sandbox), with its
run folder under ``--out``: rerunning the benchmark resumes them, and the response cache answers the calls
already made.

Printed JSON: per seed, the library (actions kept, whether a usage demonstration was grounded), each agent's
success and progress rates on the test tasks, the share of learnact's code steps that called a learned action
and how many of those worked; over the seeds, each rate's mean and sample standard deviation and the paired
difference learnact - act. A difference within the spread of the seeds is no effect.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from learnact.envs import make_env

LEARNACT = str(Path(sys.executable).with_name("learnact"))


def run(*args: str) -> None:
    """A learnact command; an evaluation whose episodes partly ended by an error (status 3) still counts."""
    done = subprocess.run([LEARNACT, *args], stdout=subprocess.DEVNULL)
    if done.returncode not in (0, 3):
        raise SystemExit(f"learnact {' '.join(args)} failed with status {done.returncode}")


def test_tasks(env: str, learn_dir: Path, count: int) -> list[str]:
    """The first ``count`` tasks of ``env`` that are not the learning run's training tasks."""
    train = set(json.loads((learn_dir / "config.json").read_text())["train"])
    return [t.id for t in make_env(env).tasks() if t.id not in train][:count]


def stats(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def one_seed(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    root = args.out / f"seed{seed}"
    model = ["--model", args.model]
    learn_dir = root / "learn"
    run("learn", "--method", "learnact", "--env", args.env, *model, "--seed", str(seed), "--samples",
        str(args.samples), "--rounds", str(args.rounds), "--out", str(learn_dir))  # fmt: skip
    tasks = test_tasks(args.env, learn_dir, args.test)
    library = json.loads((learn_dir / "library" / "library.json").read_text())
    row: dict[str, Any] = {
        "seed": seed,
        "actions_kept": len(library["selected"]),
        "usage_grounded": library.get("usage") is not None,
        "test_tasks": tasks,
    }
    for method in ("learnact", "act"):
        extra = ["--library", str(learn_dir)] if method == "learnact" else []
        out = root / f"eval-{method}"
        run("eval", "--method", method, "--env", args.env, *model, *extra, "--tasks", ",".join(tasks), "--seeds",
            "1", "--max-steps", str(args.max_steps), "--out", str(out))  # fmt: skip
        summary = json.loads((out / "summary.json").read_text())
        row[method] = {"success": summary["success_rate"], "progress": summary["progress_rate"]}
        if method == "learnact" and summary.get("learned"):
            used = summary["learned"]
            row[method]["learned_steps_share"] = used["learned_steps"] / max(used["code_steps"], 1)
            row[method]["learned_ok"] = used["learned_ok"]
            row[method]["learned_steps"] = used["learned_steps"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="pddl/blockworld")
    parser.add_argument("--model", default="local")
    parser.add_argument("--seeds", default="0,1,2", help="learning seeds, comma-separated")
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--test", type=int, default=6, help="test tasks per seed (none of its training tasks)")
    parser.add_argument("--max-steps", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path("runs/learning-bench"))
    parser.add_argument("--json", action="store_true", help="print only the JSON")
    args = parser.parse_args()
    started = time.monotonic()
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        rows.append(one_seed(args, seed))
        if not args.json:
            print(json.dumps(rows[-1]), file=sys.stderr)
    result = {
        "env": args.env,
        "model": args.model,
        "settings": {"samples": args.samples, "rounds": args.rounds, "test": args.test, "max_steps": args.max_steps},
        "seeds": rows,
        "learnact_success": stats([r["learnact"]["success"] for r in rows]),
        "act_success": stats([r["act"]["success"] for r in rows]),
        "learnact_progress": stats([r["learnact"]["progress"] for r in rows]),
        "act_progress": stats([r["act"]["progress"] for r in rows]),
        "success_difference": stats([r["learnact"]["success"] - r["act"]["success"] for r in rows]),
        "progress_difference": stats([r["learnact"]["progress"] - r["act"]["progress"] for r in rows]),
        "wall_s": round(time.monotonic() - started, 1),
    }
    print(json.dumps(result, indent=None if args.json else 1))


if __name__ == "__main__":
    main()
