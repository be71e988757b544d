"""Does LearnAct help? `python benchmarks/learning_bench.py [--envs pddl/blockworld,pddl/gripper] [--seeds 0,1,2]`.

An experiment that can show the effect of learned actions, and its absence. For each domain and seed,
``learnact learn`` learns a library on the seed's training tasks; then three agents are evaluated on the same
test tasks, none of the seed's training tasks (the only goals the learner was shown; the demonstration is a
problem outside the task set):

- ``learnact``: the act agent with the learned library;
- ``act``: the act agent without it (the same prompts less the learned actions);
- ``control``: the act agent with a small hand-written library (``benchmarks/libraries/<domain>.py``, imported
  with ``learnact actions import``, checked and validated like learned actions, and shown at work by the usage
  lines ``<domain>.usage``, grounded on the demonstration task as a learned set's are): does a weak agent gain
  from good actions at all?

Every evaluation uses request seed 0 and the same step budget, so the seeds differ by what was learned and by
the test tasks. Every command is the CLI's own (subprocesses, Docker sandbox), with its run folder under
``--out``: rerunning the benchmark resumes them, and the response cache answers the calls already made.

Printed JSON: per domain and seed, the library (actions kept, whether a usage demonstration was grounded, and
whether by matching the actions' calls rather than by the model's rewrite, and where the agent reads it: before
the primitive demonstration, after it or alone, as learning chose on the training tasks) and,
per agent, success and progress on the test tasks, the share of its code steps that called a library action
and how many of those worked and acted (at least one valid primitive call), tokens and wall seconds; per
domain and agent, the mean and sample standard deviation over the seeds, and the paired difference learnact -
act. A difference within the spread of the seeds is no effect.
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
LIBRARIES = Path(__file__).with_name("libraries")  # the controls' hand-written libraries, one per domain
AGENTS = ("learnact", "act", "control")


def run(*args: str) -> float:
    """A learnact command and its wall seconds; an evaluation whose episodes partly ended by an error (status 3)
    still counts."""
    started = time.monotonic()
    done = subprocess.run([LEARNACT, *args], stdout=subprocess.DEVNULL)
    if done.returncode not in (0, 3):
        raise SystemExit(f"learnact {' '.join(args)} failed with status {done.returncode}")
    return round(time.monotonic() - started, 1)


def test_tasks(env: str, learn_dir: Path, count: int) -> list[str]:
    """The first ``count`` tasks of ``env`` that are not the learning run's training tasks."""
    train = set(json.loads((learn_dir / "config.json").read_text())["train"])
    return [t.id for t in make_env(env).tasks() if t.id not in train][:count]


def stats(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def learning_tokens(learn_dir: Path) -> int:
    """Tokens of the learning run's own calls (the learner's and its scoring agent's)."""
    calls = [json.loads(line) for line in (learn_dir / "calls.jsonl").read_text().splitlines() if line.strip()]
    for folder in (learn_dir / "score").rglob("calls.jsonl"):
        calls += [json.loads(line) for line in folder.read_text().splitlines() if line.strip()]
    usages = [(c.get("response") or {}).get("usage") or {} for c in calls]
    return sum(u.get("prompt_tokens", 0) + u.get("completion_tokens", 0) for u in usages)


def control_library(env: str, out: Path) -> Path | None:
    """The domain's hand-written library imported into ``out`` (once); None when the domain has none."""
    source = LIBRARIES / f"{env.rsplit('/', 1)[-1]}.py"
    if not source.is_file():
        return None
    if not (out / "library.json").is_file():
        usage = ["--usage", str(source.with_suffix(".usage"))] if source.with_suffix(".usage").is_file() else []
        run("actions", "import", str(source), "--env", env, *usage, "--out", str(out))
    return out


def evaluate(args: argparse.Namespace, env: str, agent: str, library: Path | None, tasks: list[str], out: Path):
    method = "act" if library is None else "learnact"
    extra = ["--library", str(library)] if library is not None else []
    wall = run("eval", "--method", method, "--env", env, "--model", args.model, *extra, "--tasks", ",".join(tasks),
               "--seeds", "1", "--max-steps", str(args.max_steps), "--out", str(out))  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    usage = summary["usage"]
    row = {
        "success": summary["success_rate"],
        "progress": summary["progress_rate"],
        "tokens": usage["prompt_tokens"] + usage["completion_tokens"],
        "wall_s": wall,
    }
    if summary.get("learned"):
        used = summary["learned"]
        row["library_steps_share"] = used["learned_steps"] / max(used["code_steps"], 1)
        row["library_steps"] = used["learned_steps"]
        row["library_calls_ok"] = used["learned_ok"]
        row["library_calls_acted"] = used.get("learned_acted", 0)
    return row


def one_seed(args: argparse.Namespace, env: str, seed: int) -> dict[str, Any]:
    root = args.out / env.replace("/", "-") / f"seed{seed}"
    learn_dir = root / "learn"
    learn_wall = run("learn", "--method", "learnact", "--env", env, "--model", args.model, "--seed", str(seed),
                     "--samples", str(args.samples), "--rounds", str(args.rounds), "--out", str(learn_dir))  # fmt: skip
    tasks = test_tasks(env, learn_dir, args.test)
    library = json.loads((learn_dir / "library" / "library.json").read_text())
    row: dict[str, Any] = {
        "seed": seed,
        "actions_kept": len(library["selected"]),
        "usage_grounded": library.get("usage") is not None,
        "usage_matched": (library.get("usage") or {}).get("matched", False),
        "usage_placement": (library.get("usage") or {}).get("placement"),
        "learning": {"tokens": learning_tokens(learn_dir), "wall_s": learn_wall},
        "test_tasks": tasks,
    }
    libraries = {"learnact": learn_dir, "act": None, "control": control_library(env, args.out / "control" / env)}
    for agent in AGENTS:
        if agent == "control" and libraries[agent] is None:
            continue
        row[agent] = evaluate(args, env, agent, libraries[agent], tasks, root / f"eval-{agent}")
    return row


def over_seeds(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each agent's rates over the seeds, and the paired differences learnact - act."""
    result: dict[str, Any] = {"actions_kept": [r["actions_kept"] for r in rows]}
    for agent in AGENTS:
        measured = [r[agent] for r in rows if agent in r]
        if not measured:
            continue
        result[agent] = {key: stats([m[key] for m in measured]) for key in ("success", "progress")}
        shares = [m["library_steps_share"] for m in measured if "library_steps_share" in m]
        if shares:
            result[agent]["library_steps_share"] = stats(shares)
            result[agent]["library_calls_ok"] = sum(m["library_calls_ok"] for m in measured)
            result[agent]["library_steps"] = sum(m["library_steps"] for m in measured)
            result[agent]["library_calls_acted"] = sum(m.get("library_calls_acted", 0) for m in measured)
    for key in ("success", "progress"):
        result[f"{key}_difference"] = stats([r["learnact"][key] - r["act"][key] for r in rows])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", default="pddl/blockworld,pddl/gripper", help="domains, comma-separated")
    parser.add_argument("--model", default="local")
    parser.add_argument("--seeds", default="0,1,2", help="learning seeds, comma-separated")
    parser.add_argument("--samples", type=int, default=4, help="candidate sets created, and new ones per round")
    parser.add_argument("--rounds", type=int, default=2, help="optimisation rounds")
    parser.add_argument("--test", type=int, default=6, help="test tasks per seed (none of its training tasks)")
    parser.add_argument("--max-steps", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path("runs/learning-bench"))
    parser.add_argument("--json", action="store_true", help="print only the JSON")
    args = parser.parse_args()
    started = time.monotonic()
    domains = {}
    for env in args.envs.split(","):
        rows = []
        for seed in (int(s) for s in args.seeds.split(",")):
            rows.append(one_seed(args, env, seed))
            if not args.json:
                print(json.dumps({"env": env, **rows[-1]}), file=sys.stderr)
        domains[env] = {"seeds": rows, **over_seeds(rows)}
    result = {
        "model": args.model,
        "settings": {"samples": args.samples, "rounds": args.rounds, "test": args.test, "max_steps": args.max_steps},
        "domains": domains,
        "wall_s": round(time.monotonic() - started, 1),
    }
    print(json.dumps(result, indent=None if args.json else 1))


if __name__ == "__main__":
    main()
