"""`learnact check PATH`: the static checker of action code as a linter (text, JSON or SARIF 2.1.0);
`learnact check --list-rules`: the rule table (text or JSON), from the records of `actions/rules.py`.

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
from learnact.actions.library import ActionVersion, Library
from learnact.actions.text import visible
from learnact.engine.commands.common import ExitCode, fail, reported
from learnact.engine.commands.inputs import read_code
from learnact.envs import primitive_specs

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
STDIN = "-"


class KindChoice(str, Enum):
    auto = "auto"
    action_module = "action-module"
    agent_snippet = "agent-snippet"
    program = "program"


class OutputFormat(str, Enum):
    text = "text"
    json = "json"
    sarif = "sarif"


def _read(path: str) -> str:
    """The code, its size checked before it is read whole (never parsed when over the limit)."""
    with reported():
        return read_code(path)


def _action_names(path: str) -> list[str]:
    """Names of the functions an action module defines (they become callable from a snippet)."""
    try:
        tree = ast.parse(_read(path))
    except SyntaxError as error:
        raise fail(f"{path} (--actions) does not parse: {error.msg} at line {error.lineno}") from None
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
    what = f"{'an' if what[0] in 'aeiou' else 'a'} {what}"
    if not findings:
        return f"{path}: no problems found (checked as {what})"
    counts = f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"
    return f"{path}: {counts} (checked as {what})"


def _list_rules(output_format: OutputFormat) -> None:
    if output_format is OutputFormat.json:
        rules = [{"id": r.id.value, "name": r.name, **r.model_dump(mode="json", exclude={"id", "name"})} for r in RULES]
        sys.stdout.write(json.dumps(rules, indent=2) + "\n")
    elif output_format is OutputFormat.text:
        width = max(len(rule.name) for rule in RULES)
        for rule in RULES:
            sys.stdout.write(f"{rule.id.value}  {rule.name:<{width}}  {rule.severity.value:<7}  {rule.summary}\n")
    else:
        raise fail("--list-rules writes text or json, not sarif")


def check(
    path: Annotated[
        str | None,
        typer.Argument(
            metavar="PATH",
            help="Python file to check; '-' reads standard input; a library folder (or a learning run's folder)"
            " checks the selected version of every action",
        ),
    ] = None,
    env: Annotated[
        str | None, typer.Option("--env", help="environment whose primitives the code calls, e.g. pddl/blockworld")
    ] = None,
    kind: Annotated[
        KindChoice,
        typer.Option(
            "--kind",
            help="action-module (only imports and documented functions), agent-snippet (statements, no "
            "definitions) or program (helper functions and top-level calls); auto: action module when the "
            "code holds only imports and definitions, program when it also has top-level statements, "
            "else agent snippet",
        ),
    ] = KindChoice.auto,
    actions: Annotated[
        str | None,
        typer.Option("--actions", help="action module whose functions the code may call (for snippets)"),
    ] = None,
    output_format: Annotated[OutputFormat, typer.Option("--format", help="text, json or sarif")] = OutputFormat.text,
    list_rules: Annotated[
        bool, typer.Option("--list-rules", help="print the rules (id, name, severity, summary) and exit")
    ] = False,
) -> None:
    """Statically check model-written action code; exit 1 when an error is found."""
    if list_rules:
        return _list_rules(output_format)
    if path is None:
        raise fail("missing argument PATH (a Python file, or '-' for standard input)")
    if path != STDIN and Library.found_at(Path(path)):  # an action library: the selected version of each action
        return check_library(Path(path), env, output_format)
    code = _read(path)
    primitives = []
    if env is not None:
        with reported():
            primitives = primitive_specs(env)
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
        raise typer.Exit(ExitCode.FAILED)


def check_library(directory: Path, env: str | None, output_format: OutputFormat) -> None:
    """`learnact check DIR` for a library: the selected version of every action (the latest of each when
    nothing is selected yet), each checked as an action module against the environment's primitives
    (``env``, else the library's), the other actions callable."""
    with reported():
        library = Library.open_existing(directory)
    with reported():
        selected = library.selected()
        chosen = [library.get(name, number) for name, number in selected.items()] or [
            library.versions(name)[-1] for name in library.names()
        ]
        for version in chosen:  # what a reviewer opens must be what runs
            library.verify_code_file(version.name, version.version)
        env = env or library.env()
        primitives = primitive_specs(env) if env else []
    names = [version.name for version in chosen]
    results: list[tuple[ActionVersion, Path, list[Finding]]] = []
    for version in chosen:
        others = [name for name in names if name != version.name]
        findings = check_code(version.code, CodeKind.action_module, primitives, others)
        results.append((version, library.code_path(version.name, version.version), findings))
    every = [finding for _, _, findings in results for finding in findings]
    if output_format is OutputFormat.json:
        found = [
            {"action": v.name, "version": v.version, "path": str(path), **f.model_dump(mode="json")}
            for v, path, findings in results
            for f in findings
        ]
        sys.stdout.write(json.dumps(found) + "\n")  # ASCII: every control or bidi character escaped
    elif output_format is OutputFormat.sarif:
        runs = [to_sarif(findings, str(path))["runs"][0] for _, path, findings in results]
        log = to_sarif([], str(library.path))
        log["runs"][0]["results"] = [result for run in runs for result in run["results"]]
        sys.stdout.write(json.dumps(log, indent=2) + "\n")
    else:
        for _, path, findings in results:
            for finding in findings:
                sys.stdout.write(visible(finding.render(str(path))) + "\n")
        errors = sum(f.severity is Severity.error for f in every)
        which = "selected" if selected else "latest (nothing selected yet)"
        primitives_of = f"the primitives of {env}" if env else "no primitives (give --env)"
        typer.echo(
            visible(
                f"{library.path}: {len(chosen)} actions ({which} versions) checked as action modules against "
                f"{primitives_of}: {errors} errors, {len(every) - errors} warnings"
            ),
            err=True,
        )
    if any(f.severity is Severity.error for f in every):
        raise typer.Exit(ExitCode.FAILED)
