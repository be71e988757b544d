"""The act agent on the local model: `python benchmarks/agent_bench.py [--task ID] [--max-steps N] [--json]`.

One episode of ``act`` with the local model (llama.cpp in process) on one pddl/blockworld task
(default blockworld-03, 20 steps: the local model reaches step 20 there; on 01, 05, 07 and 10 it stops
earlier by repeated failure, on 02 it succeeds at step 4), through the real runner (``run_evaluation``,
the Docker sandbox, one worker) into a temporary run directory, with a ``CachedBackbone`` on a fresh ``ResponseCache``
in a temporary folder. Then the identical run again, into a new run directory with the same cache. One run;
loading the model is not timed. The figures (JSON keys):

- ``step1_s``, ``step20_s``: the latency of the model's answer (``CallRecord.latency_s`` from the run's
  ``calls.jsonl``, one call per step for ``act``) at step 1 and at step ``last_step`` of the first run.
  ``last_step`` is the last step reached (the episode's call count): 20 unless the episode ended early
  (``ended``: done, repeated_failure, ...), in which case ``step20_s`` is the latency at ``last_step``.
- ``step20_over_step1``: ``step20_s / step1_s``. Target <= 1.5 (the prompt grows by a few lines a step,
  so the common prefix's KV cache must be reused).
- ``prompt_tokens_1``, ``prompt_tokens_last``: the prompt length in tokens at step 1 and at ``last_step``.
- ``prompt_tokens_per_s``, ``generation_tokens_per_s``: a least-squares fit, without intercept, of
  ``latency_i = evaluated_i / prompt_tps + completion_i / generation_tps`` over every call of the first
  run, where ``completion_i`` is the call's completion tokens and ``evaluated_i`` the prompt tokens the
  backbone evaluates: all of them at step 1, and at a later step ``prompt_i - 64 * floor(prompt_{i-1} /
  64)`` (the local backbone reuses the KV cache up to the last whole 64-token block of the previous
  prompt; this assumes the prompt extends the previous one, as it does within the 20-step history window).
- ``cold_prompt_tokens_per_s``: step 1's prompt tokens over step 1's whole latency (generation included,
  so a lower bound of the cold prompt rate).
- ``first_s``, ``rerun_s``: the wall time of ``run_evaluation`` for the first run and for the rerun
  (sandbox start included, model load not); ``rerun_ratio`` = ``rerun_s / first_s``. Target <= 0.05 (the
  response cache answers every call). ``rerun_cached_calls`` / ``rerun_calls`` show that it did, and
  ``same_steps`` that the rerun took the same actions.
- ``calls``: ``[prompt tokens, completion tokens, latency s]`` of each call of the first run, in step order.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from learnact.engine import EvalConfig, Method, RunSettings, run_evaluation
from learnact.engine.llm import (
    CALLS,
    LOCAL,
    CachedBackbone,
    CallLog,
    CallRecord,
    ModelDescription,
    ResponseCache,
    make_backbone,
)
from learnact.engine.records import ModelSettings
from learnact.envs import EnvSpec

ENV = "pddl/blockworld"
BLOCK = 64  # learnact.engine.llm.local.REUSE_BLOCK


def fit_rates(calls: list[CallRecord]) -> tuple[float | None, float | None]:
    """Prompt and generation tokens/s from the calls' latencies (see the module docstring)."""
    rows: list[tuple[float, float, float]] = []
    previous: int | None = None
    for call in calls:
        assert call.response is not None
        prompt, completion = call.response.usage.prompt_tokens, call.response.usage.completion_tokens
        reused = 0 if previous is None else min(previous // BLOCK * BLOCK, prompt - 1)
        rows.append((prompt - reused, completion, call.latency_s))
        previous = prompt
    # normal equations of latency = a * evaluated + b * completion
    sxx = sum(x * x for x, _, _ in rows)
    syy = sum(y * y for _, y, _ in rows)
    sxy = sum(x * y for x, y, _ in rows)
    sxl = sum(x * t for x, _, t in rows)
    syl = sum(y * t for _, y, t in rows)
    det = sxx * syy - sxy * sxy
    if det == 0:
        return None, None
    a = (sxl * syy - syl * sxy) / det
    b = (syl * sxx - sxl * sxy) / det
    return (1 / a if a > 0 else None), (1 / b if b > 0 else None)


def run_once(config: EvalConfig, out: Path, backbone: CachedBackbone) -> tuple[float, list[CallRecord], dict]:
    started = time.perf_counter()
    run_evaluation(config, out, backbone=backbone)
    wall = time.perf_counter() - started
    records = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines() if line.strip()]
    return wall, CallLog(out / CALLS).read(), records[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="blockworld-03", help="the blockworld task (default blockworld-03)")
    parser.add_argument("--max-steps", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args()

    settings = RunSettings(
        env=EnvSpec(name=ENV), method=Method.act, max_steps=args.max_steps, model=ModelSettings(model=LOCAL)
    )
    config = EvalConfig(run=settings, tasks=(args.task,))
    with tempfile.TemporaryDirectory(prefix="learnact-agent-bench-") as tmp:
        root = Path(tmp)
        cache = ResponseCache(root / "cache")
        backbone = CachedBackbone(make_backbone(ModelDescription(model=LOCAL, cache=False)), cache)
        try:
            first_s, calls, episode = run_once(config, root / "run1", backbone)
            rerun_s, rerun_calls, rerun_episode = run_once(config, root / "run2", backbone)
        finally:
            backbone.close()
    answered = [c for c in calls if c.response is not None and not c.cached]
    if not answered:
        raise SystemExit(f"the episode made no model call ({episode.get('status')}: {episode.get('error')})")
    first, last = answered[0], answered[-1]
    assert first.response is not None and last.response is not None
    prompt_tps, generation_tps = fit_rates(answered)
    result = {
        "task": args.task,
        "max_steps": args.max_steps,
        "last_step": len(answered),
        "ended": episode.get("ended"),
        "success": episode.get("success"),
        "step1_s": round(first.latency_s, 3),
        "step20_s": round(last.latency_s, 3),
        "step20_over_step1": round(last.latency_s / first.latency_s, 3),
        "prompt_tokens_1": first.response.usage.prompt_tokens,
        "prompt_tokens_last": last.response.usage.prompt_tokens,
        "prompt_tokens_per_s": round(prompt_tps, 1) if prompt_tps else None,
        "generation_tokens_per_s": round(generation_tps, 1) if generation_tps else None,
        "cold_prompt_tokens_per_s": round(first.response.usage.prompt_tokens / first.latency_s, 1),
        "first_s": round(first_s, 2),
        "rerun_s": round(rerun_s, 3),
        "rerun_ratio": round(rerun_s / first_s, 4),
        "rerun_calls": len(rerun_calls),
        "rerun_cached_calls": sum(c.cached for c in rerun_calls),
        "same_steps": [s["code"] for s in episode["steps"]] == [s["code"] for s in rerun_episode["steps"]],
        "calls": [
            [c.response.usage.prompt_tokens, c.response.usage.completion_tokens, round(c.latency_s, 2)]
            for c in answered
            if c.response is not None
        ],
    }
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
