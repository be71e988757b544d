"""The parts of the ``alfworld`` package used here, imported without its side effect on the environment.

Importing ``alfworld`` sets ``$ALFWORLD_DATA`` to ``~/.cache/alfworld`` when it is unset, which would
hide from ``--alfworld-data``'s fallback that the user gave no data folder; the variable is restored.
"""

import os

_given = os.environ.get("ALFWORLD_DATA")

from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos  # noqa: E402
from alfworld.agents.expert import HandCodedAgentTimeout, HandCodedTWAgent  # noqa: E402
from alfworld.agents.expert.handcoded_expert import HandCodedAgentFailed  # noqa: E402
from alfworld.gen import constants  # noqa: E402

if _given is None:
    os.environ.pop("ALFWORLD_DATA", None)

__all__ = [
    "AlfredDemangler",
    "AlfredInfos",
    "HandCodedAgentFailed",
    "HandCodedAgentTimeout",
    "HandCodedTWAgent",
    "constants",
]
