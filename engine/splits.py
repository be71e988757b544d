"""Training and test splits, as in the paper: per domain or task type, a few training tasks chosen by the
seed; the test tasks are all tasks (the paper's setting) or the rest.

The split is a pure function of the task list, the seed and the count, so that every process (a resumed
run, another executor's worker) computes the same one; runs store it anyway so a reader sees it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from learnact.envs import TaskInfo

TRAIN_PER_TYPE = 3  # the paper's 3 training tasks per domain or task type


class Split(BaseModel):
    """The tasks of one seed: ``train`` (per type, chosen by the seed) and ``test``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int
    train: tuple[str, ...]
    test: tuple[str, ...]


def split_tasks(
    tasks: Sequence[TaskInfo], seed: int, per_type: int = TRAIN_PER_TYPE, test_on_rest: bool = False
) -> Split:
    """``per_type`` training tasks of each type (all of a type's tasks when it has fewer), drawn with
    ``random.Random(seed)`` from the type's tasks in their listed order; test on every task, or with
    ``test_on_rest`` on those not drawn for training. Tasks keep their listed order in both.
    """
    rng = random.Random(seed)
    chosen: set[str] = set()
    for task_type in dict.fromkeys(t.type for t in tasks):
        ids = [t.id for t in tasks if t.type == task_type]
        chosen.update(rng.sample(ids, min(per_type, len(ids))))
    train = tuple(t.id for t in tasks if t.id in chosen)
    test = tuple(t.id for t in tasks if not (test_on_rest and t.id in chosen))
    return Split(seed=seed, train=train, test=test)
