"""pair.durations: `--ttl` values as people type them, and durations as people read them."""

from __future__ import annotations

import pytest

from pair.api.errors import PairError
from pair.durations import humanize, parse


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("3600", 3600),
        ("1h", 3600),
        ("30m", 1800),
        ("1h30m", 5400),
        ("90m", 5400),
        ("2d", 172800),
        ("45s", 45),
        ("1d2h3m4s", 86400 + 7200 + 180 + 4),
        ("1H", 3600),
        (" 1h ", 3600),
    ],
)
def test_parse(text: str, seconds: int) -> None:
    assert parse(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["", " ", "h", "1x", "1.5h", "-1h", "-60", "1h 30m", "1 h", "abc", "1hh", "h1", "1h30", "one hour", "+60"],
)
def test_bad_inputs(text: str) -> None:
    with pytest.raises(PairError) as info:
        parse(text)
    assert "1h" in info.value.hint


def test_unicode_digit_lookalikes_are_a_pair_error() -> None:
    with pytest.raises(PairError):
        parse("²")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (3600, "1 hour"),
        (1800, "30 minutes"),
        (5400, "1 hour 30 minutes"),
        (7200, "2 hours"),
        (86400, "1 day"),
        (90061, "1 day 1 hour 1 minute 1 second"),
        (61, "1 minute 1 second"),
        (1, "1 second"),
        (0, "0 seconds"),
    ],
)
def test_humanize(seconds: int, text: str) -> None:
    assert humanize(seconds) == text
