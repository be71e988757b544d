"""PDDL robotic planning (tyreworld, blockworld, barman, gripper) in AgentBoard's text style.

``PddlEnv.builtin(domain)`` serves the project's seeded problem sets; ``PddlEnv.from_files`` loads
external domain and problem files (the benchmark's own, or any typed STRIPS domain).
"""

from .env import DOMAINS, PddlEnv
from .model import PddlError
from .planner import PlannerError

__all__ = ["DOMAINS", "PddlEnv", "PddlError", "PlannerError"]
