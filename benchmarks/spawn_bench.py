"""How long a root host is blocked starting one sandbox process: `python benchmarks/spawn_bench.py [--heap-mib N]
[--json]`.

Why: a worker starts a sandbox per episode from a process that holds the planner's and the environment's
memory and several threads. ``subprocess.Popen(user=..., group=..., extra_groups=...)`` makes CPython fork
that whole process (page tables copied, the interpreter lock held) instead of ``vfork``; the process
backend starts its sandboxes through ``setpriv`` instead (``sandbox/process_backend.py``). Both start
``/bin/true`` as nobody/nogroup, 40 times each, from this process after touching ``--heap-mib`` MiB (default
400) on top of the worker's imports; printed is the median time spent inside ``Popen`` (the exec that
follows runs in the child, not in the host): {"heap_mib", "popen_user_ms", "setpriv_ms"}. Run it as root.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import time

import learnact.engine.runs.episode_runner  # noqa: F401 - a worker's imports: a realistic heap
from learnact.sandbox.process_backend import NOBODY

REPEATS = 40


def median_ms(command: list[str], **identity: object) -> float:
    taken = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env={}, start_new_session=True,
            close_fds=True, **identity,  # type: ignore[arg-type]
        )  # fmt: skip
        taken.append(time.perf_counter() - started)
        process.wait()
    return round(statistics.median(taken) * 1000, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heap-mib", type=int, default=400)
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args()
    heap = bytearray(args.heap_mib * 2**20)
    for index in range(0, len(heap), 4096):  # touched: mapped pages a fork must copy the tables of
        heap[index] = 1
    setpriv = shutil.which("setpriv") or "setpriv"
    result = {
        "heap_mib": args.heap_mib,
        "popen_user_ms": median_ms(["/bin/true"], user=NOBODY, group=NOBODY, extra_groups=[]),
        "setpriv_ms": median_ms([setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "/bin/true"]),
    }
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
