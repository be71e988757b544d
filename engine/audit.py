"""The audit of a learned action library: what code a model wrote, why, and how it fared.

A reviewer of a LearnAct run asks, per learned action: which versions exist and how each differs from
the one it came from, what the static checker said, what feedback (a finding, a traceback, a failed call
with its trajectory) made the model write the change, where the action was called and with what outcome,
and which rounds and scores decided what was kept. :func:`build_audit` gathers that from a library (or a
run folder holding one) into one :class:`Audit`; :func:`print_audit` shows it on a terminal and
:func:`audit_html` as one self-contained HTML page.

Every string in a library came from a model or the sandbox and is hostile: on the terminal it goes through
``visible`` and rich's markup escape; on the page through ``visible`` (a bidirectional override must not
reorder the code a reviewer reads) and then HTML escaping, and the page carries a Content-Security-Policy
that forbids every script and every fetch, so that even a mistake in escaping runs nothing. The page holds
no script of its own and loads nothing (inline CSS only).
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from string import Template

from pydantic import BaseModel, ConfigDict
from rich.console import Console
from rich.rule import Rule
from rich.table import Table

from learnact.actions.files import write_atomic
from learnact.actions.library import ActionVersion, CallOutcome, LearningProgress, Library, RoundRecord
from learnact.actions.text import visible
from learnact.engine.cli_common import shown
from learnact.engine.rundir import describe_os_error

TERMINAL_TEXT_LINES = 12  # of a feedback text or trajectory on the terminal; the page shows it whole
TERMINAL_FAILED_CALLS = 8  # failed calls listed per action on the terminal
PAGE_CALLS = 2_000  # calls listed per action on the page (the counts cover every call)


class CallCounts(BaseModel):
    """Calls of one version in one phase, and how many worked."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    calls: int = 0
    ok: int = 0


class VersionAudit(BaseModel):
    """One version with its change against its parent and its calls per phase (score, test)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: ActionVersion
    change: str  # unified diff against the parent; empty for a first version (its code is the change)
    selected: bool
    calls: dict[str, CallCounts]


class ActionAudit(BaseModel):
    """One learned action: every version, oldest first, and every recorded call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    selected: int | None  # the selected version; None when the action is not in the selected set
    versions: list[VersionAudit]
    outcomes: list[CallOutcome]

    @property
    def latest(self) -> ActionVersion:
        return self.versions[-1].version


class Audit(BaseModel):
    """A library's audit: where it is, its environment and score, its actions and its rounds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    library: str
    env: str | None
    score: float | None
    learning: LearningProgress | None  # None: the library does not say
    actions: list[ActionAudit]
    rounds: list[RoundRecord]

    def selection(self) -> str:
        """What the selected set is: the result, or the best set so far of a run that has not finished."""
        if self.learning is not None and not self.learning.finished:
            return f"the set selected so far ({self.learning.describe()})"
        return "the selected set"


def build_audit(path: Path) -> Audit:
    """The audit of the library at ``path`` (a library folder, or a run folder holding ``library/``).

    :raises LibraryError: when ``path`` is not a readable library.
    """
    library = Library.open_existing(path)
    selected = library.selected()
    outcomes = library.outcomes()
    actions = []
    for name in library.names():
        calls = [outcome for outcome in outcomes if outcome.name == name]
        counts: Counter[tuple[int, str, bool]] = Counter((o.version, o.phase, o.ok) for o in calls)
        versions = []
        for version in library.versions(name):
            library.verify_code_file(name, version.version)  # the page shows the recorded code: it must be the file's
            change = library.diff(name, version.parent, version.version) if version.parent is not None else ""
            phases = {
                phase: CallCounts(
                    calls=counts[(version.version, phase, True)] + counts[(version.version, phase, False)],
                    ok=counts[(version.version, phase, True)],
                )
                for phase in ("score", "test")
            }
            versions.append(
                VersionAudit(
                    version=version, change=change, selected=selected.get(name) == version.version, calls=phases
                )
            )
        actions.append(ActionAudit(name=name, selected=selected.get(name), versions=versions, outcomes=calls))
    return Audit(
        library=str(library.path),
        env=library.env(),
        score=library.score(),
        learning=library.learning(),
        actions=actions,
        rounds=library.rounds(),
    )


# --- terminal ------------------------------------------------------------------------------------------


def _calls_cell(counts: CallCounts) -> str:
    return "-" if counts.calls == 0 else f"{counts.ok}/{counts.calls}"


def _phase_total(action: ActionAudit, phase: str) -> CallCounts:
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
            _calls_cell(_phase_total(action, "score")),
            _calls_cell(_phase_total(action, "test")),
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
                style = "red" if finding.severity.value == "error" else "yellow"
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


# --- HTML ----------------------------------------------------------------------------------------------


def h(text: str) -> str:
    """Untrusted text as HTML text or attribute value: control and bidi characters made visible, escaped."""
    return html.escape(visible(text), quote=True)


def _badge(text: str, kind: str = "") -> str:
    return f'<span class="badge {kind}">{h(text)}</span>'


def _pre(text: str, css: str = "") -> str:
    return f'<pre class="{css}">{h(text)}</pre>'


def _diff_html(diff: str) -> str:
    lines = [f'<span class="{kind}">{h(line)}</span>' for kind, line in diff_lines(diff)]
    return '<pre class="diff">' + "".join(lines) + "</pre>"  # each line a block: no newline between


def _calls_text(counts: CallCounts) -> str:
    return "no calls" if counts.calls == 0 else f"{counts.ok}/{counts.calls} ok"


def _anchor(name: str) -> str:
    return "action-" + h(name)


def _rounds_html(rounds: list[RoundRecord]) -> str:
    rows = []
    for record in rounds:
        for candidate in record.candidates:
            best = candidate.candidate == record.best
            mark = _badge("best", "ok") if best else ""
            if best and record.rolled_back:
                mark += _badge("below the previous best: rolled back", "failed")
            components = ", ".join(f"{h(k)} {v:.3f}" for k, v in candidate.components.items())
            actions = ", ".join(
                f'<a href="#{_anchor(name)}">{h(name)}</a> v{version}' for name, version in candidate.actions.items()
            )
            rows.append(
                f'<tr class="{"best" if best else ""}"><td class="num">{record.round}</td>'
                f'<td class="num">{candidate.candidate} {mark}</td><td class="num">{candidate.score:.3f}</td>'
                f"<td>{components}</td><td class=num>{candidate.successes}/{candidate.tasks}</td>"
                f"<td>{actions}</td></tr>"
            )
    return (
        '<h2 id="rounds">Learning rounds</h2><table><tr><th>round</th><th>candidate</th><th>score</th>'
        "<th>components</th><th>successes</th><th>actions (name version)</th></tr>" + "".join(rows) + "</table>"
    )


def _summary_html(audit: Audit) -> str:
    rows = []
    for action in audit.actions:
        selected = "-" if action.selected is None else f"v{action.selected}"
        origins = " → ".join(h(v.version.origin.value) for v in action.versions)
        rows.append(
            f'<tr><td><a href="#{_anchor(action.name)}">{h(action.name)}</a></td><td>{selected}</td>'
            f'<td class="num">{len(action.versions)}</td><td>{origins}</td>'
            f"<td>{_calls_text(_phase_total(action, 'score'))}</td><td>{_calls_text(_phase_total(action, 'test'))}</td>"
            f'<td class="mono">{h(action.latest.signature)}</td><td>{h(action.latest.description)}</td></tr>'
        )
    return (
        '<h2 id="actions">Learned actions</h2><table><tr><th>action</th><th>selected</th><th>versions</th>'
        "<th>origins</th><th>score calls</th><th>test calls</th><th>signature (latest)</th>"
        "<th>description (latest)</th></tr>" + "".join(rows) + "</table>"
    )


def _version_html(entry: VersionAudit) -> str:
    version = entry.version
    css = "version" + (" selected" if entry.selected else "") + (" dropped" if version.dropped else "")
    badges = _badge(version.origin.value)
    if entry.selected:
        badges += _badge("selected", "selected")
    if version.dropped:
        badges += _badge("dropped", "dropped")
    parent = f" ← v{version.parent}" if version.parent is not None else ""
    parts = [
        f'<article class="{css}" id="{_anchor(version.name)}-v{version.version}">',
        f"<h3>v{version.version}{parent} {badges}</h3>",
        f'<div class="meta">round {version.round} · model call <span class="mono">{h(version.call_id or "-")}</span>'
        f' · sha256 <span class="mono">{h(version.sha256)}</span> · score calls {_calls_text(entry.calls["score"])}'
        f" · test calls {_calls_text(entry.calls['test'])}</div>",
    ]
    if version.dropped:
        parts.append(f'<div class="label">Dropped</div><div>{h(version.dropped)}</div>')
    parts.append(
        f'<div class="label">Signature</div><div class="mono">{h(version.signature or "(does not parse)")}</div>'
    )
    parts.append(f'<div class="label">Description</div><div>{h(version.description)}</div>')
    parts.append(f'<div class="label">Usage example</div>{_pre(version.example)}')
    if version.notes:
        notes = "".join(f"<li>{h(note)}</li>" for note in version.notes)
        parts.append(f'<div class="label">Usage notes</div><ul>{notes}</ul>')
    if version.feedback is not None and version.feedback.kind != "none":
        parts.append(f'<div class="label">Feedback behind this version ({h(version.feedback.kind)})</div>')
        parts.append(_pre(version.feedback.text, "feedback"))
        if version.feedback.trajectory:
            parts.append(
                "<details><summary>trajectory excerpt shown to the model</summary>"
                f"{_pre(version.feedback.trajectory, 'trajectory')}</details>"
            )
    if version.verdict:
        findings = "".join(
            f"<li>{_badge(f.severity.value, f.severity.value)}<span class=mono>{h(f.render(f'v{version.version}.py'))}"
            "</span></li>"
            for f in version.verdict
        )
        parts.append(f'<div class="label">Static verdict</div><ul class="verdict">{findings}</ul>')
    else:
        parts.append('<div class="label">Static verdict</div><div class="verdict">no findings</div>')
    if version.parent is None:
        parts.append(f'<div class="label">Code</div>{_pre(version.code, "code")}')
    else:
        change = _diff_html(entry.change) if entry.change else f"<div>no change from v{version.parent}</div>"
        parts.append(f'<div class="label">Change from v{version.parent}</div>{change}')
        parts.append(
            f"<details><summary>whole code of v{version.version}</summary>{_pre(version.code, 'code')}</details>"
        )
    parts.append("</article>")
    return "".join(parts)


def _calls_html(action: ActionAudit) -> str:
    if not action.outcomes:
        return '<div class="label">Calls</div><div>never called while scoring or testing</div>'
    rows = []
    for outcome in action.outcomes[:PAGE_CALLS]:
        status = _badge("ok", "ok") if outcome.ok else _badge(outcome.status, "failed")
        steps = ""
        if outcome.primitive_steps:
            steps = (
                f"<details><summary>{len(outcome.primitive_steps)} primitive steps inside</summary>"
                f"{_pre(chr(10).join(outcome.primitive_steps))}</details>"
            )
        rows.append(
            f'<tr class="{"" if outcome.ok else "failed"}"><td>{h(outcome.phase)}</td>'
            f'<td class="num">{outcome.round}</td>'
            f'<td class="num">{outcome.candidate}</td><td>{h(outcome.task)}</td><td class="num">{outcome.step}</td>'
            f'<td class="num">v{outcome.version}</td><td class="mono">{h(outcome.code)}</td><td>{status}</td>'
            f"<td>{h(outcome.error or '')}{steps}</td></tr>"
        )
    omitted = len(action.outcomes) - PAGE_CALLS
    more = f"<p>... and {omitted} more calls (outcomes.jsonl holds all)</p>" if omitted > 0 else ""
    return (
        f'<div class="label">Calls ({sum(o.ok for o in action.outcomes)} of {len(action.outcomes)} ok)</div>'
        "<table><tr><th>phase</th><th>round</th><th>candidate</th><th>task</th><th>step</th><th>version</th>"
        "<th>the agent's line</th><th>outcome</th><th>error / primitive steps</th></tr>"
        + "".join(rows)
        + "</table>"
        + more
    )


HOW_TO_READ = """<div class="how"><p>How to read this page: each learned action lists its versions oldest first.
A version says what wrote it (<i>created</i> by the model, <i>validated_fix</i> after a static finding or a
traceback, <i>update</i> or <i>plan_note</i> after a failed call while scoring, <i>rollback</i> when a round lowered
the score), the feedback the model was shown, the static checker's verdict on its code, and its change against the
version it came from. The calls table says where the action was called, by which version, and what happened inside.
Everything in grey boxes was written by a model or the sandbox: it is shown escaped, with control and bidirectional
characters made visible (<code>\\u202e</code>); this page runs no script and loads nothing.</p></div>"""


def audit_html(audit: Audit) -> str:
    """``audit`` as one self-contained HTML page (inline CSS, no script, nothing fetched)."""
    score = "not scored" if audit.score is None else f"{audit.score:.3f}"
    body = [
        f"<h1>Audit of the action library {h(audit.library)}</h1>",
        f'<p class="meta">environment {h(audit.env or "not selected yet")} · {h(audit.selection())}\'s score {score} · '
        f"{len(audit.actions)} actions · {sum(len(a.versions) for a in audit.actions)} versions · "
        f"{len(audit.rounds)} rounds</p>",
        HOW_TO_READ,
        _summary_html(audit),
    ]
    if audit.rounds:
        body.append(_rounds_html(audit.rounds))
    for action in audit.actions:
        state = _badge("not selected") if action.selected is None else _badge(f"selected v{action.selected}", "ok")
        body.append(f'<section id="{_anchor(action.name)}"><h2>{h(action.name)} {state}</h2>')
        body.extend(_version_html(entry) for entry in action.versions)
        body.append(_calls_html(action))
        body.append("</section>")
    template = Template(resources.files("learnact.engine").joinpath("data", "audit.html").read_text(encoding="utf-8"))
    return template.substitute(title=h(f"learnact audit: {audit.library}"), body="\n".join(body))


def write_audit_html(audit: Audit, path: Path) -> None:
    """Write the page of ``audit`` to ``path``, atomically.

    :raises RunDirError: when it cannot be written.
    """
    try:
        write_atomic(path, audit_html(audit))
    except OSError as exc:
        raise describe_os_error(exc, path, "write") from None
