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

from collections import Counter
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from learnact.actions.library import ActionVersion, CallOutcome, LearningProgress, Library, RoundRecord

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
