"""pair.durations: `--ttl` values as people type them, and durations as people read them."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pair.api.errors import PairError
from pair.api.models import SPACE_KEY_MAX_SECONDS, SPACE_KEY_MIN_SECONDS, NewSpaceKeyRequest
from pair.cli.space_keys import expiry
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


def _outcome(call: Callable[[], object]) -> object:
    try:
        return call()
    except PairError as exc:
        return exc


TEXTS = (
    st.text(alphabet="0123456789dhms ", max_size=40) | st.text(max_size=40) | st.from_regex(r"\A\d{10,5000}[dhms]?\Z")
)


@given(TEXTS)
def test_any_text_is_seconds_or_one_pair_error(text: str) -> None:
    # Never a ValueError (int() refuses numbers of more than 4300 digits) or another traceback.
    got = _outcome(lambda: parse(text))
    if isinstance(got, PairError):
        assert got.message.endswith(("is not a duration.", "is too long a duration.")) and "1h" in got.hint
    else:
        assert isinstance(got, int) and got >= 0


UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@given(st.integers(0, 10**12 - 1), st.sampled_from(sorted(UNITS)))
def test_every_key_lifetime_the_cli_takes_the_broker_takes(n: int, unit: str) -> None:
    """`--expires` (keys create, init --new-key) is checked where it is parsed against the wire
    model's bounds: what passes is a valid request, what does not is one sentence and a hint."""
    seconds = n * UNITS[unit]
    got = _outcome(lambda: expiry(f"{n}{unit}"))
    if n == 0 and unit == "":
        assert got is None  # "0": never
    elif seconds < SPACE_KEY_MIN_SECONDS:
        assert isinstance(got, PairError) and got.message == "A Space key must live at least one minute."
    elif seconds > SPACE_KEY_MAX_SECONDS:
        assert isinstance(got, PairError) and got.message == "A Space key lives at most 10 years."
        assert "--expires" in got.hint
    else:
        assert got == seconds
        assert (
            msgspec.convert({"name": "repo", "expires_in_seconds": got}, NewSpaceKeyRequest).expires_in_seconds == got
        )


def test_a_key_of_100000_days_is_refused_in_the_cli() -> None:
    with pytest.raises(PairError, match=r"^A Space key lives at most 10 years\.$"):
        expiry("100000d")
    assert expiry("3660d") == 3660 * 86400 and expiry("never") is None
