"""Untrusted text printed on a terminal through rich, by every engine room that prints (the commands and the
audit's terminal view): one escape, so that no model's or sandbox's text is read as markup or drives the
terminal."""

from __future__ import annotations

from rich.markup import escape

from learnact.actions.text import visible


def shown(text: str) -> str:
    """Untrusted text as rich markup that prints it literally: control characters made visible,
    markup escaped (program output, errors, observations, messages quoting code, diagnostics)."""
    return escape(visible(text))
