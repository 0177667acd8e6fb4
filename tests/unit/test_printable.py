"""pair.printable.printable: what the broker, a container or a person wrote reaches a terminal as
text, never as a control sequence."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from pair.printable import printable


def test_the_issues_hostname_prints_as_text() -> None:
    shown = printable("h\x1b]0;TITLE\x07\x1b[31mRED")
    assert shown == "h\\x1b]0;TITLE\\x07\\x1b[31mRED"


def test_c1_controls_bidi_and_line_breaks_are_escaped() -> None:
    assert printable("a\x9b31mb") == "a\\x9b31mb"  # CSI as one 8-bit control
    assert printable("admin\u202egnp.exe") == "admin\\u202egnp.exe"  # right-to-left override
    assert printable("one\ntwo\rthree\tfour\x7f") == "one\\ntwo\\rthree\\tfour\\x7f"
    assert printable("\u2066x\u2069\u200e\ufeff") == "\\u2066x\\u2069\\u200e\\ufeff"


def test_ordinary_text_of_any_script_is_kept() -> None:
    for text in ("alice@example.com", "jürgen@bücher.de", "Grüße, 世界", "שלום", "naïve café — 42 % ✓"):
        assert printable(text) == text


@given(st.text())
def test_nothing_printable_returns_can_steer_a_terminal(text: str) -> None:
    shown = printable(text)
    for char in shown:
        category = unicodedata.category(char)
        assert category != "Cc", repr(shown)  # no C0, DEL or C1 control survives
        assert char not in "\u061c\u200e\u200f\u2028\u2029" and not "\u202a" <= char <= "\u202e", repr(shown)
        assert not "\u2066" <= char <= "\u2069", repr(shown)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cf", "Zl", "Zp"))))
def test_text_without_controls_is_unchanged(text: str) -> None:
    assert printable(text) == text
