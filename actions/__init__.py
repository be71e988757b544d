"""learnact.actions: action code as data, and the static checker of model-written action code."""

from learnact.actions.checker import bound_names, check, infer_kind
from learnact.actions.errors import LearnactError
from learnact.actions.models import CodeKind, Finding, Severity
from learnact.actions.policy import ALLOWED_BUILTINS, ALLOWED_MODULES, DANGEROUS_BUILTINS, module_api
from learnact.actions.rules import RULES, RULES_BY_ID, Rule, RuleId

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
