"""Durations as people type them (`1h`, `90m`, `1h30m`, `3600`) and say them (`1 hour`).

Shared by the CLI (`--ttl`), the broker's admin commands (`--since`) and its web page.
"""

from __future__ import annotations

import re

from pair.api.errors import PairError

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+)([dhms])")


MAX_DIGITS = 12  # per number: a century in seconds has 10; more is a typo (and int() caps digits)


def parse(text: str) -> int:
    """Seconds in `text` (`1h30m`, `90m`, `3600`). Raises PairError for anything else, including a
    number of more than MAX_DIGITS digits."""
    text = text.strip().lower()
    if text.isascii() and text.isdigit():
        parts = [(text, "s")]
    else:
        parts = _PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise PairError(f"{text!r} is not a duration.", "Use forms like 1h, 30m, 1h30m or 3600 (seconds).")
    if any(len(n.lstrip("0")) > MAX_DIGITS for n, _ in parts):
        raise PairError(f"{text[:40]!r} is too long a duration.", "Use forms like 1h, 30m, 90d or 3600 (seconds).")
    return sum(int(n) * _UNITS[u] for n, u in parts)


def humanize(seconds: int) -> str:
    words = []
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            words.append(f"{count} {unit}{'' if count == 1 else 's'}")
    return " ".join(words) or "0 seconds"
