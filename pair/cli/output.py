"""Printing for people: tables and sizes (errors are printed by `pair.runner`). Table cells can
carry the broker's or a container's text, so they go through pair.printable.printable."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from pair.printable import printable


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    rows = [[printable(str(c)) for c in row] for row in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in (headers, *rows)]
    return "\n".join(lines)


def human_bytes(n: int) -> str:
    if n <= 0:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def is_interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()
