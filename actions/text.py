"""Untrusted text on the host: made visible before a terminal sees it, encodable, and bounded.

Text that a program in the sandbox or a model wrote is hostile on the host too (DESIGN.md, the trust
boundary). Three helpers, in the lowest room so that every layer can use them (stdlib only):

- ``visible``: control characters shown as escapes, so that printing the text cannot drive a
  terminal (ESC sequences: window title, OSC 52 clipboard, hyperlinks, cursor moves that overwrite
  what was printed; CR; BEL) nor reorder what it shows (bidirectional overrides and isolates).
- ``encodable``: lone surrogates (which no UTF-8 encoder accepts, so that writing the text to a file,
  a terminal or JSON would fail) replaced by their escapes, at the boundary where the text enters.
- ``truncated`` and ``cut_utf8``: a string bounded in UTF-8 bytes, cut on a character boundary.
"""

from __future__ import annotations

import re
from typing import Any

# C0 controls but \t and \n, DEL, C1 controls, the bidi embeddings/overrides U+202A-U+202E and
# isolates U+2066-U+2069, and surrogates (only lone ones can occur in a str that came from JSON).
_HIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """``text`` with every character that could drive or reorder a terminal shown as an escape.

    ESC becomes ``\\x1b``, CR ``\\x0d``, U+202E ``\\u202e``, a lone surrogate ``\\ud800``; newlines and
    tabs stay. Use it on every untrusted string printed for a human (JSON output escapes by itself).
    """
    return _HIDDEN.sub(_escape, text)


def encodable(text: str) -> str:
    """``text`` as valid Unicode: each lone surrogate becomes its escape (``\\ud800``)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def encodable_data(value: Any) -> Any:
    """A JSON value (str, number, list, dict, ...) with every string in it made ``encodable``.

    Lists and dicts are changed in place (freshly parsed data is what this is for) and walked without
    recursion, however deep they are nested.
    """
    if isinstance(value, str):
        return encodable(value)
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            for index, item in enumerate(node):
                if isinstance(item, str):
                    node[index] = encodable(item)
                elif isinstance(item, (list, dict)):
                    stack.append(item)
        elif isinstance(node, dict):
            for key, item in list(node.items()):
                if isinstance(item, str):
                    item = node[key] = encodable(item)
                elif isinstance(item, (list, dict)):
                    stack.append(item)
                if isinstance(key, str) and encodable(key) is not key:
                    del node[key]
                    node[encodable(key)] = item
    return value


def cut_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 encoding has at most ``max_bytes`` bytes."""
    if len(text) * 4 <= max_bytes:  # no character has more than 4 bytes
        return text
    data = text.encode("utf-8", "backslashreplace")
    if len(data) <= max_bytes:
        return text
    return data[: max(max_bytes, 0)].decode("utf-8", "ignore")  # drops a character the cut split


def truncated(text: str, max_bytes: int) -> str:
    """``text`` in at most ``max_bytes`` bytes of UTF-8, cut on a character boundary and marked.

    A cut text ends with ``…[truncated N bytes]``, within ``max_bytes``; when ``max_bytes`` is too
    small to hold some text and the mark, the mark alone stands for the whole text (it has at most
    40 bytes).
    """
    if len(text) * 4 <= max_bytes:
        return text
    size = len(text.encode("utf-8", "backslashreplace"))
    if size <= max_bytes:
        return text
    mark_size = len(truncation_mark(size).encode("utf-8"))  # the longest mark this cut can need
    if max_bytes < 2 * mark_size:
        return truncation_mark(size)
    kept = cut_utf8(text, max_bytes - mark_size)
    return kept + truncation_mark(size - len(kept.encode("utf-8", "backslashreplace")))


def truncation_mark(dropped_bytes: int) -> str:
    """What a truncated string ends with."""
    return f"…[truncated {dropped_bytes} bytes]"
