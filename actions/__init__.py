"""learnact.actions: action code as data, and the static checker of model-written action code.

This is the bottom room: every other room imports from it (the error root, durable files, processes,
plugin discovery, visible text). Its names are therefore loaded on first use, so that importing the error
root (``learnact.actions.errors``) does not load the checker or RestrictedPython.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from learnact.actions.checker import bound_names, check, infer_kind
    from learnact.actions.errors import LearnactError
    from learnact.actions.models import CodeKind, Finding, Severity
    from learnact.actions.policy import ALLOWED_BUILTINS, ALLOWED_MODULES, DANGEROUS_BUILTINS, module_api
    from learnact.actions.rules import RULES, RULES_BY_ID, Rule, RuleId

_HOMES = {
    "bound_names": "checker",
    "check": "checker",
    "infer_kind": "checker",
    "LearnactError": "errors",
    "CodeKind": "models",
    "Finding": "models",
    "Severity": "models",
    "ALLOWED_BUILTINS": "policy",
    "ALLOWED_MODULES": "policy",
    "DANGEROUS_BUILTINS": "policy",
    "module_api": "policy",
    "RULES": "rules",
    "RULES_BY_ID": "rules",
    "Rule": "rules",
    "RuleId": "rules",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{home}"), name)


__all__ = [
    "ALLOWED_BUILTINS",
    "ALLOWED_MODULES",
    "DANGEROUS_BUILTINS",
    "RULES",
    "RULES_BY_ID",
    "CodeKind",
    "Finding",
    "LearnactError",
    "Rule",
    "RuleId",
    "Severity",
    "bound_names",
    "check",
    "infer_kind",
    "module_api",
]
