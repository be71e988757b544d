"""learnact.engine: episodes and evaluation runs through the sandbox, their records, and the CLI.

The errors of every room share one root, :class:`LearnactError` (re-exported here): catch it to
handle whatever learnact raises on purpose; anything else is a bug.
"""

from learnact.actions.errors import LearnactError
from learnact.engine.commands.inputs import InputError, read_code
from learnact.engine.llm import ModelDescription
from learnact.engine.records import EpisodeRecord, EpisodeSpec, Method, RunSettings, StepRecord, Summary
from learnact.engine.rundir import RunDir, RunDirBusy, RunDirError
from learnact.engine.runs.episode import EpisodeInterrupted, run_episode
from learnact.engine.runs.evaluation import EvalConfig, run_evaluation
from learnact.engine.runs.planning import EvalPlan, LearnPlan, RunChoice, evaluate, plan_evaluation, plan_learning

__all__ = [
    "EpisodeInterrupted",
    "EpisodeRecord",
    "EpisodeSpec",
    "EvalConfig",
    "EvalPlan",
    "InputError",
    "LearnPlan",
    "LearnactError",
    "Method",
    "ModelDescription",
    "RunDir",
    "RunDirBusy",
    "RunChoice",
    "RunDirError",
    "RunSettings",
    "StepRecord",
    "Summary",
    "evaluate",
    "plan_evaluation",
    "plan_learning",
    "read_code",
    "run_episode",
    "run_evaluation",
]
