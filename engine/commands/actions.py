"""`learnact actions list|show|history|diff DIR [NAME]`: a learned action library read from the terminal;
`learnact audit RUN [--html FILE]`: its audit (engine/reports/audit.py); `learnact check DIR`: the static check of
the selected version of every action in a library (called by `learnact check` when PATH is a folder).

DIR is a library folder or the run folder of a learning run (which holds ``library/``). Everything a library
holds was written by a model or the sandbox: it is printed through ``shown``/``visible`` (JSON output
escapes by itself). Nothing here runs the code.

Exit status: 0; 1 when `check` finds an error; 2 for a folder that is not a library, an unknown action or
version.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from learnact.actions import Severity
from learnact.actions.library import ActionVersion, Library
from learnact.actions.text import visible
from learnact.engine.commands.common import err, fail, reported
from learnact.engine.markup import shown
from learnact.engine.reports.audit import build_audit
from learnact.engine.reports.audit_html import write_audit_html
from learnact.engine.reports.audit_terminal import diff_markup, print_audit

app = typer.Typer(help="Read a learned action library: its actions, their versions and changes.", no_args_is_help=True)

DirArgument = Annotated[
    Path, typer.Argument(metavar="DIR", help="a library folder, or a learning run's folder (holding library/)")
]
NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="the action's name")]
VersionOption = Annotated[
    Optional[int], typer.Option("--version", min=1, help="the version (default: the selected one, else the latest)")
]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON only")]


def _console() -> Console:
    return Console(highlight=False, emoji=False)


def _open(path: Path) -> Library:
    with reported():
        return Library.open_existing(path)


def _version(library: Library, name: str, version: int | None) -> ActionVersion:
    """Version ``version`` of ``name``; None: the selected one, else the latest."""
    with reported():
        if version is None and name not in library.selected():
            versions = library.versions(name)
            if versions:
                return versions[-1]
        return library.get(name, version)


def _json(value: object) -> None:
    sys.stdout.write(json.dumps(value) + "\n")  # ASCII: every control or bidi character escaped


@app.command("list")
def list_actions(directory: DirArgument, json_output: JsonOption = False) -> None:
    """The actions of a library: selected version, versions, calls, signature and description."""
    library = _open(directory)
    with reported():
        selected, names = library.selected(), library.names()
        rows = []
        for name in names:
            versions = library.versions(name)
            shown_version = versions[selected[name] - 1] if name in selected else versions[-1]
            outcomes = library.outcomes(name)
            rows.append((name, shown_version, len(versions), outcomes))
        env, score, learning = library.env(), library.score(), library.learning()
    if json_output:
        return _json(
            {
                "library": str(library.path),
                "env": env,
                "score": score,
                "learning": None if learning is None else learning.model_dump(),
                "selected": selected,
                "actions": [
                    {
                        "name": name,
                        "selected": selected.get(name),
                        "versions": count,
                        "signature": version.signature,
                        "description": version.description,
                        "calls": len(outcomes),
                        "ok_calls": sum(o.ok for o in outcomes),
                    }
                    for name, version, count, outcomes in rows
                ],
            }
        )
    console = _console()
    score_text = "not scored" if score is None else f"{score:.3f}"
    stage = "" if learning is None else f"; {learning.describe()}"
    console.print(
        shown(
            f"{library.path}: {len(names)} actions, {len(selected)} selected (env {env or '-'}, score {score_text}"
            f"{stage})"
        ),
        soft_wrap=True,
    )
    table = Table()
    for column in ("action", "selected", "versions", "calls ok", "signature", "description"):
        table.add_column(column, overflow="fold")
    for name, version, count, outcomes in rows:
        table.add_row(
            shown(name),
            f"v{selected[name]}" if name in selected else "-",
            str(count),
            f"{sum(o.ok for o in outcomes)}/{len(outcomes)}" if outcomes else "-",
            shown(version.signature),
            shown(version.description),
        )
    console.print(table)


@app.command("show")
def show_action(
    directory: DirArgument, name: NameArgument, version: VersionOption = None, json_output: JsonOption = False
) -> None:
    """One version of an action: where it came from, its verdict, notes and code."""
    library = _open(directory)
    chosen = _version(library, name, version)
    if json_output:
        return _json(chosen.model_dump(mode="json"))
    console = _console()
    selected = library.selected().get(name) == chosen.version
    parent = f" (from v{chosen.parent})" if chosen.parent is not None else ""
    lines = [
        f"{chosen.name} v{chosen.version}{parent}{' [selected]' if selected else ''}",
        f"origin: {chosen.origin.value}, round {chosen.round}, model call {chosen.call_id or '-'}",
        f"sha256: {chosen.sha256}",
        f"file: {library.code_path(name, chosen.version)}",
        f"signature: {chosen.signature or '(the code does not parse)'}",
        f"description: {chosen.description}",
        f"example: {chosen.example}",
        *(f"note: {note}" for note in chosen.notes),
    ]
    if chosen.dropped:
        lines.append(f"dropped: {chosen.dropped}")
    if chosen.feedback is not None and chosen.feedback.kind != "none":
        lines.append(f"feedback ({chosen.feedback.kind}):")
        lines.extend("  " + line for line in chosen.feedback.text.rstrip("\n").split("\n"))
    lines.append("static verdict:" + ("" if chosen.verdict else " no findings"))
    lines.extend("  " + f.render(f"{name}/v{chosen.version}.py") for f in chosen.verdict)
    for line in lines:
        console.print(shown(line), soft_wrap=True)
    console.rule()
    for line in chosen.code.rstrip("\n").split("\n"):
        console.print(shown(line), soft_wrap=True)


@app.command("history")
def history(directory: DirArgument, name: NameArgument, json_output: JsonOption = False) -> None:
    """Every version of an action, oldest first: parent, origin, feedback, verdict and calls."""
    library = _open(directory)
    with reported():
        versions = library.versions(name)
        if not versions:
            library.get(name, 1)  # raises: no such action
        outcomes = library.outcomes(name)
        selected = library.selected().get(name)
    if json_output:
        return _json([version.model_dump(mode="json") for version in versions])
    table = Table(title=visible(f"{name}: {len(versions)} versions"), title_justify="left")
    for column in ("version", "parent", "origin", "round", "model call", "sha256", "verdict", "calls ok", "feedback"):
        table.add_column(column, overflow="fold")
    for version in versions:
        calls = [o for o in outcomes if o.version == version.version]
        errors = sum(f.severity is Severity.error for f in version.verdict)
        verdict = "clean" if not version.verdict else f"{errors} errors, {len(version.verdict) - errors} warnings"
        feedback = ""
        if version.feedback is not None and version.feedback.kind != "none":
            first = next((line for line in version.feedback.text.split("\n") if line.strip()), "")
            feedback = f"{version.feedback.kind}: {first}"
        if version.dropped:
            feedback = f"dropped: {version.dropped}" + (f"; {feedback}" if feedback else "")
        table.add_row(
            f"v{version.version}" + (" (selected)" if version.version == selected else ""),
            "-" if version.parent is None else f"v{version.parent}",
            version.origin.value,
            str(version.round),
            shown(version.call_id or "-"),
            version.sha256[:12],
            verdict,
            f"{sum(o.ok for o in calls)}/{len(calls)}" if calls else "-",
            shown(feedback),
        )
    _console().print(table)


@app.command("diff")
def diff(
    directory: DirArgument,
    name: NameArgument,
    version: VersionOption = None,
    against: Annotated[
        Optional[int], typer.Option("--against", min=1, help="the older version (default: the version's parent)")
    ] = None,
) -> None:
    """The change of a version against its parent (or --against): code, description, example, notes."""
    library = _open(directory)
    newer = _version(library, name, version)
    older = against if against is not None else newer.parent
    if older is None:
        raise fail(f"v{newer.version} of {name} has no parent (it was {newer.origin.value}); give --against N")
    with reported():
        text = library.diff(name, older, newer.version)
    console = _console()
    if not text:
        console.print(shown(f"{name}: v{older} and v{newer.version} are the same"), soft_wrap=True)
        return
    for line in diff_markup(text):
        console.print(line, soft_wrap=True)


def audit(
    run: Annotated[
        Path, typer.Argument(metavar="RUN", help="a learning run's folder (holding library/), or a library folder")
    ],
    html: Annotated[
        Optional[Path], typer.Option("--html", help="also write the audit as one self-contained HTML page")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="print the audit as JSON only")] = False,
) -> None:
    """Audit a learned library: per action its versions, changes, verdicts, feedback and calls; the rounds."""
    with reported():
        report = build_audit(run)
        if html is not None:
            write_audit_html(report, html)
    if json_output:
        _json(report.model_dump(mode="json"))
    else:
        print_audit(report, _console())
    if html is not None:
        err.print(shown(f"audit page: {html}"), soft_wrap=True)
