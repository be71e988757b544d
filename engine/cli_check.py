"""`learnact check PATH`: the static checker of action code as a linter (text, JSON or SARIF 2.1.0).

Exit status: 1 when an error-level finding exists, 0 otherwise, 2 on usage errors.
"""

from __future__ import annotations

import ast
import json
import sys
from enum import Enum
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

from learnact.actions import RULES, CodeKind, Finding, Severity, infer_kind
from learnact.actions import check as check_code
from learnact.actions.text import visible
from learnact.engine.inputs import InputError, read_code
from learnact.envs.registry import primitive_specs

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
STDIN = "-"


class KindChoice(str, Enum):
    auto = "auto"
    action_module = "action-module"
    agent_snippet = "agent-snippet"


class OutputFormat(str, Enum):
    text = "text"
    json = "json"
    sarif = "sarif"


def _usage_error(message: str) -> typer.Exit:
    typer.echo(f"error: {visible(message)}", err=True)
    return typer.Exit(2)


def _read(path: str) -> str:
    """The code, its size checked before it is read whole (never parsed when over the limit)."""
    try:
        return read_code(path)
    except InputError as error:
        raise _usage_error(str(error)) from None


def _action_names(path: str) -> list[str]:
    """Names of the functions an action module defines (they become callable from a snippet)."""
    try:
        tree = ast.parse(_read(path))
    except SyntaxError as error:
        raise _usage_error(f"{path} (--actions) does not parse: {error.msg} at line {error.lineno}") from None
    return [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]


def _artifact_uri(path: str) -> str:
    if path == STDIN:
        return "stdin"
    candidate = Path(path)
    return candidate.as_uri() if candidate.is_absolute() else quote(candidate.as_posix())


def _tool_version() -> str:
    try:
        return version("learnact")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "0+unknown"


def to_sarif(findings: list[Finding], path: str) -> dict[str, Any]:
    """A SARIF 2.1.0 log with one run: every rule in the driver, one result per finding."""
    index = {rule.id: i for i, rule in enumerate(RULES)}
    uri = _artifact_uri(path)
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "learnact-check",
                        "version": _tool_version(),
                        "rules": [
                            {
                                "id": rule.id,
                                "name": rule.name,
                                "shortDescription": {"text": rule.summary},
                                "fullDescription": {"text": rule.why},
                                "defaultConfiguration": {"level": rule.severity.value},
                            }
                            for rule in RULES
                        ],
                    }
                },
                "columnKind": "unicodeCodePoints",  # columns count characters, not UTF-16 units
                "results": [
                    {
                        "ruleId": finding.rule,
                        "ruleIndex": index[finding.rule],
                        "level": finding.severity.value,
                        "message": {"text": finding.message},
                        "locations": [
                            {
                                "physicalLocation": {
                                    "artifactLocation": {"uri": uri},
                                    "region": {"startLine": finding.line, "startColumn": finding.col},
                                }
                            }
                        ],
                    }
                    for finding in findings
                ],
            }
        ],
    }


def _summary(findings: list[Finding], path: str, kind: CodeKind) -> str:
    errors = sum(f.severity is Severity.error for f in findings)
    warnings = len(findings) - errors
    what = kind.value.replace("_", " ")
    if not findings:
        return f"{path}: no problems found (checked as an {what})"
    counts = f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"
    return f"{path}: {counts} (checked as an {what})"


def check(
    path: Annotated[str, typer.Argument(metavar="PATH", help="Python file to check; '-' reads standard input.")],
    env: Annotated[
        str | None, typer.Option("--env", help="environment whose primitives the code calls, e.g. pddl/blockworld")
    ] = None,
    kind: Annotated[
        KindChoice,
        typer.Option(
            "--kind",
            help="action-module (only imports and documented functions) or agent-snippet; "
            "auto: action module when the code holds only imports and definitions",
        ),
    ] = KindChoice.auto,
    actions: Annotated[
        str | None,
        typer.Option("--actions", help="action module whose functions the code may call (for snippets)"),
    ] = None,
    output_format: Annotated[OutputFormat, typer.Option("--format", help="text, json or sarif")] = OutputFormat.text,
) -> None:
    """Statically check model-written action code; exit 1 when an error is found."""
    code = _read(path)
    primitives = []
    if env is not None:
        try:
            primitives = primitive_specs(env)
        except (KeyError, ValueError) as error:
            raise _usage_error(str(error.args[0]) if error.args else f"unknown environment '{env}'") from None
    known = _action_names(actions) if actions else []
    code_kind = infer_kind(code) if kind is KindChoice.auto else CodeKind(kind.value.replace("-", "_"))
    findings = check_code(code, code_kind, primitives, known)
    shown = "<stdin>" if path == STDIN else path
    if output_format is OutputFormat.json:
        sys.stdout.write(json.dumps([f.model_dump(mode="json") for f in findings]) + "\n")
    elif output_format is OutputFormat.sarif:
        sys.stdout.write(json.dumps(to_sarif(findings, path), indent=2) + "\n")
    else:
        for finding in findings:
            # Messages may quote the code: its control characters must not reach a terminal.
            sys.stdout.write(visible(finding.render(shown)) + "\n")
        typer.echo(visible(_summary(findings, shown, code_kind)), err=True)
    if any(f.severity is Severity.error for f in findings):
        raise typer.Exit(1)
