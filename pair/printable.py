"""Text from others (the broker, a container, a person) made safe to print on a terminal.

A terminal obeys what it is sent: ESC starts a control sequence (ECMA-48: colours, the window
title through OSC, cursor moves that overwrite what was printed), C1 controls (U+0080–U+009F) do
the same on terminals that take 8-bit controls, BS and CR hide text, and the Unicode bidi
controls (Unicode TR#9: U+202A–U+202E, U+2066–U+2069, U+200E/F, U+061C) reorder what follows
("Trojan Source", CVE-2021-42574). `printable` writes each of those as a visible escape instead.

Standard library only and no regular expressions: `pair spaces proxy` prints close reasons through
it on every connection.
"""

from __future__ import annotations

__all__ = ["printable"]

_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
_CONTROLS = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]  # C0, DEL, C1
# Bidi embeddings, overrides, isolates and marks; line/paragraph separators; zero-width and BOM.
_INVISIBLE = [0x061C, 0x200B, 0x200E, 0x200F, *range(0x2028, 0x202F), *range(0x2066, 0x206A), 0xFEFF]

_TABLE: dict[int, str] = {code: _NAMED.get(chr(code), f"\\x{code:02x}") for code in _CONTROLS}
_TABLE.update({code: f"\\u{code:04x}" for code in _INVISIBLE})


def printable(text: str) -> str:
    """`text` with every control character, ESC sequence start, C1 control and bidi/invisible
    format character replaced by a visible backslash escape (`\\x1b`, `\\n`, `\\u202e`); ordinary
    letters of any script are kept. Safe for one line of a terminal."""
    return text.translate(_TABLE)
