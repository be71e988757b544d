"""The audit as one self-contained HTML page: every untrusted string through ``visible`` (a bidirectional override
must not reorder the code a reviewer reads) and HTML escaping, under a Content-Security-Policy that forbids every
script and fetch; no script of its own, nothing loaded (inline CSS only)."""

from __future__ import annotations

import html
from importlib import resources
from pathlib import Path
from string import Template

from learnact.actions.files import write_atomic
from learnact.actions.library import RoundRecord
from learnact.actions.text import visible
from learnact.engine.reports.audit import PAGE_CALLS, ActionAudit, Audit, CallCounts, VersionAudit
from learnact.engine.reports.audit_terminal import diff_lines, phase_total
from learnact.engine.rundir import describe_os_error

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
            f"<td>{_calls_text(phase_total(action, 'score'))}</td><td>{_calls_text(phase_total(action, 'test'))}</td>"
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
    template = Template(
        resources.files("learnact.engine.reports").joinpath("data", "audit.html").read_text(encoding="utf-8")
    )
    return template.substitute(title=h(f"learnact audit: {audit.library}"), body="\n".join(body))


def write_audit_html(audit: Audit, path: Path) -> None:
    """Write the page of ``audit`` to ``path``, atomically.

    :raises RunDirError: when it cannot be written.
    """
    try:
        write_atomic(path, audit_html(audit))
    except OSError as exc:
        raise describe_os_error(exc, path, "write") from None
