"""learnact.engine.agents: the policies an episode asks for its next step (the expert, the ``act``,
``react`` and ``code_as_policy`` language-model agents), the methods that choose them (``methods``: built in
and from plugins), their prompts (data files under ``data/``) and demonstrations.

A policy only proposes; the episode checks and runs every line of code in the sandbox. Model output is
untrusted text: it is parsed here into one line of code (a whole program for code_as_policy), a thought,
or nothing usable, never executed here.
"""

from learnact.engine.agents.methods import (
    BUILTIN_METHODS,
    Learns,
    MethodSpec,
    UnknownMethod,
    make_policy,
    method_names,
    method_plugins,
    method_spec,
)
from learnact.engine.agents.parsing import parse_answer, parse_program
from learnact.engine.agents.policy import (
    THINK_ANSWER,
    Act,
    Decision,
    ExpertPolicy,
    ModelPolicy,
    NoCode,
    Policy,
    PolicyContext,
    Program,
    ProgramPolicy,
    Think,
    call_code,
)

__all__ = [
    "BUILTIN_METHODS",
    "THINK_ANSWER",
    "Act",
    "Decision",
    "ExpertPolicy",
    "Learns",
    "MethodSpec",
    "ModelPolicy",
    "NoCode",
    "Policy",
    "PolicyContext",
    "Program",
    "ProgramPolicy",
    "Think",
    "UnknownMethod",
    "call_code",
    "make_policy",
    "method_names",
    "method_plugins",
    "method_spec",
    "parse_answer",
    "parse_program",
]
