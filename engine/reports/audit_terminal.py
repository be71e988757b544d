"""The audit on a terminal: every untrusted string through ``visible`` and rich's markup escape."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.rule import Rule
from rich.table import Table

from learnact.actions import Severity
from learnact.actions.library import RoundRecord
from learnact.engine.markup import shown
from learnact.engine.reports.audit import TERMINAL_FAILED_CALLS, TERMINAL_TEXT_LINES, ActionAudit, Audit, CallCounts

# --- terminal ------------------------------------------------------------------------------------------


def _calls_cell(counts: CallCounts) -> str:
    return "-" if counts.calls == 0 else f"{counts.ok}/{counts.calls}"


def phase_total(action: ActionAudit, phase: str) -> CallCounts:
    return CallCounts(
        calls=sum(v.calls[phase].calls for v in action.versions), ok=sum(v.calls[phase].ok for v in action.versions)
    )


def _head(text: str, lines: int) -> tuple[str, int]:
    """The first ``lines`` lines of ``text`` and how many more there are."""
    parts = text.split("\n")
    return "\n".join(parts[:lines]), max(0, len(parts) - lines)


def diff_lines(diff: str) -> Iterable[tuple[str, str]]:
    """Each line of a unified diff with its kind: file, hunk, add, del or ctx. A file header is a ``---``
    and ``+++`` pair right before a hunk (a removed line that starts with ``--`` is a removed line)."""
    lines = diff.rstrip("\n").split("\n")
    for index, line in enumerate(lines):
        following = lines[index + 1 : index + 3]
        if line.startswith("--- ") and following[:1] and following[0].startswith("+++ "):
            yield "file", line
        elif (
            line.startswith("+++ ")
            and index
            and lines[index - 1].startswith("--- ")
            and following[:1]
            and (following[0].startswith("@@"))
        ):
            yield "file", line
        elif line.startswith("@@"):
            yield "hunk", line
        elif line.startswith("+"):
            yield "add", line
        elif line.startswith("-"):
            yield "del", line
        else:
            yield "ctx", line


DIFF_STYLES = {"file": "bold", "hunk": "magenta", "add": "green", "del": "red"}


def diff_markup(diff: str) -> Iterable[str]:
    """Each line of a unified diff as rich markup, coloured by kind, its text shown literally."""
    for kind, line in diff_lines(diff):
        style = DIFF_STYLES.get(kind)
        yield f"[{style}]{shown(line)}[/{style}]" if style else shown(line)


def rounds_table(rounds: list[RoundRecord]) -> Table:
    """The learning rounds: each candidate's score and components, the best marked, rollbacks said."""
    table = Table(title="Learning rounds", title_justify="left")
    for column in ("round", "candidate", "score", "components", "successes", "actions"):
        table.add_column(column, overflow="fold")
    for record in rounds:
        for candidate in record.candidates:
            best = candidate.candidate == record.best
            mark = " [green]best[/green]" if best else ""
            if best and record.rolled_back:
                mark += " [red](below the previous best: rolled back)[/red]"
            table.add_row(
                str(record.round),
                f"{candidate.candidate}{mark}",
                f"{candidate.score:.3f}",
                shown(", ".join(f"{k} {v:.3f}" for k, v in candidate.components.items())),
                f"{candidate.successes}/{candidate.tasks}",
                shown(", ".join(f"{name} v{version}" for name, version in candidate.actions.items())),
            )
    return table


def print_audit(audit: Audit, console: Console) -> None:
    """Show ``audit`` on ``console``: the rounds, a table of the actions, then each action's versions
    (origin, feedback, verdict, change, calls) and its failed calls."""
    score = "not scored" if audit.score is None else f"{audit.score:.3f}"
    console.print(
        f"[bold]Audit of {shown(audit.library)}[/bold]  env: {shown(audit.env or 'not selected yet')}  "
        f"{audit.selection()}'s score: {score}",
        soft_wrap=True,
    )
    if audit.rounds:
        console.print(rounds_table(audit.rounds))
    summary = Table(title="Learned actions", title_justify="left")
    for column in ("action", "selected", "versions", "origins", "score calls ok", "test calls ok", "signature"):
        summary.add_column(column, overflow="fold")
    for action in audit.actions:
        summary.add_row(
            shown(action.name),
            "-" if action.selected is None else f"v{action.selected}",
            str(len(action.versions)),
            " → ".join(v.version.origin.value for v in action.versions),
            _calls_cell(phase_total(action, "score")),
            _calls_cell(phase_total(action, "test")),
            shown(action.latest.signature),
        )
    console.print(summary)
    for action in audit.actions:
        _print_action(action, console)


def _print_action(action: ActionAudit, console: Console) -> None:
    state = "not selected" if action.selected is None else f"selected v{action.selected}"
    console.print(Rule(f"{shown(action.name)} ({state})", align="left"))
    for entry in action.versions:
        version = entry.version
        marks = " [green]selected[/green]" if entry.selected else ""
        if version.dropped:
            marks += f" [red]dropped: {shown(version.dropped)}[/red]"
        parent = f" ← v{version.parent}" if version.parent is not None else ""
        console.print()
        console.print(
            f"[bold]v{version.version}[/bold]{parent}  {version.origin.value}  round {version.round}  "
            f"call {shown(version.call_id or '-')}  sha256 {version.sha256[:12]}  "
            f"calls: score {_calls_cell(entry.calls['score'])}, test {_calls_cell(entry.calls['test'])}{marks}",
            soft_wrap=True,
        )
        console.print(f"  description: {shown(version.description)}", soft_wrap=True)
        for note in version.notes:
            console.print(f"  note: {shown(note)}", soft_wrap=True)
        if version.feedback is not None and version.feedback.kind != "none":
            _print_text(console, f"feedback ({version.feedback.kind})", version.feedback.text)
            if version.feedback.trajectory:
                _print_text(console, "trajectory shown", version.feedback.trajectory)
        verdict = version.verdict
        if verdict:
            console.print("  static verdict:", soft_wrap=True)
            for finding in verdict:
                style = "red" if finding.severity is Severity.error else "yellow"
                rendered = finding.render(f"{version.name}/v{version.version}.py")
                console.print(f"    [{style}]{shown(rendered)}[/{style}]", soft_wrap=True)
        else:
            console.print("  static verdict: no findings", soft_wrap=True)
        if version.parent is None:
            console.print("  code:", soft_wrap=True)
            for line in version.code.rstrip("\n").split("\n"):
                console.print(f"    {shown(line)}", soft_wrap=True, highlight=False)
        elif entry.change:
            console.print(f"  change from v{version.parent}:", soft_wrap=True)
            for line in diff_markup(entry.change):
                console.print(f"    {line}", soft_wrap=True, highlight=False)
        else:
            console.print(f"  no change from v{version.parent}", soft_wrap=True)
    failed = [outcome for outcome in action.outcomes if not outcome.ok]
    if failed:
        console.print(f"  failed calls ({len(failed)} of {len(action.outcomes)}):", soft_wrap=True)
        for outcome in failed[:TERMINAL_FAILED_CALLS]:
            console.print(
                f"    {outcome.phase} round {outcome.round} candidate {outcome.candidate} "
                f"task {shown(outcome.task)} step {outcome.step} v{outcome.version}: {shown(outcome.code)} → "
                f"[red]{shown(outcome.status)}[/red] {shown(outcome.error or '')}",
                soft_wrap=True,
            )
        if len(failed) > TERMINAL_FAILED_CALLS:
            console.print(
                f"    ... and {len(failed) - TERMINAL_FAILED_CALLS} more (see the --html page)", soft_wrap=True
            )


def _print_text(console: Console, label: str, text: str) -> None:
    head, more = _head(text.rstrip("\n"), TERMINAL_TEXT_LINES)
    console.print(f"  {label}:", soft_wrap=True)
    for line in head.split("\n"):
        console.print(f"    {shown(line)}", soft_wrap=True, highlight=False)
    if more:
        console.print(f"    ... {more} more lines (see the --html page)", soft_wrap=True)
