"""Untrusted text on the host: visible control characters, encodable strings, byte bounds."""

from __future__ import annotations

import json

import pytest

from learnact.actions.text import cut_utf8, encodable, encodable_data, truncated, visible


@pytest.mark.parametrize(
    "raw, shown",
    [
        ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),  # OSC 0: window title
        ("\x1b]52;c;aGk=\x07", "\\x1b]52;c;aGk=\\x07"),  # OSC 52: clipboard
        ("\x1b[1A\x1b[2K\rok", "\\x1b[1A\\x1b[2K\\x0dok"),  # cursor up, erase line, CR
        ("\x9b31m\x7f\x00", "\\x9b31m\\x7f\\x00"),  # C1 CSI, DEL, NUL
        ("abc\u202edcba\u2066x\u2069", "abc\\u202edcba\\u2066x\\u2069"),  # bidi override, isolate
        ("lone \ud800", "lone \\ud800"),
        ("tabs\tand\nnewlines stay, é 中 😀 too", "tabs\tand\nnewlines stay, é 中 😀 too"),
    ],
)
def test_visible_shows_every_terminal_control_as_an_escape(raw: str, shown: str) -> None:
    assert visible(raw) == shown


def test_visible_leaves_no_control_character_of_any_code_point() -> None:
    everything = "".join(map(chr, range(0x3000)))
    for char in visible(everything):
        code = ord(char)
        assert char in "\t\n" or not (code < 0x20 or 0x7F <= code <= 0x9F), hex(code)
        assert not (0x202A <= code <= 0x202E or 0x2066 <= code <= 0x2069), hex(code)


def test_encodable_replaces_lone_surrogates_and_keeps_everything_else() -> None:
    assert encodable("a\ud800b\udfff") == "a\\ud800b\\udfff"
    text = "é 中 😀"
    assert encodable(text) is text
    data = ["\ud800", 1, None, ["x", {"k\udc80": "\ud83d"}]]
    assert encodable_data(data) == ["\\ud800", 1, None, ["x", {"k\\udc80": "\\ud83d"}]]
    json.dumps(encodable_data(data), ensure_ascii=False).encode("utf-8")  # encodable now
    clean = ["a", [1, {"k": "v"}]]
    assert encodable_data(clean) is clean


@pytest.mark.parametrize("text", ["x" * 1000, "é" * 1000, "😀" * 1000, "a" + "中" * 999])
@pytest.mark.parametrize("limit", [100, 101, 102, 103, 500])
def test_truncated_stays_within_its_bound_on_a_character_boundary(text: str, limit: int) -> None:
    cut = truncated(text, limit)
    assert len(cut.encode("utf-8")) <= limit
    assert cut.endswith(" bytes]") and "…[truncated " in cut
    kept = cut[: cut.index("…[truncated ")]
    assert text.startswith(kept)
    dropped = int(cut.rsplit(" ", 2)[1])
    assert dropped == len(text.encode()) - len(kept.encode())
    assert truncated(text, 10_000) is text


def test_cut_utf8_drops_a_character_the_cut_splits() -> None:
    assert cut_utf8("abé", 3) == "ab"
    assert cut_utf8("abé", 4) == "abé"
    assert cut_utf8("😀😀", 7) == "😀"
