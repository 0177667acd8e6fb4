"""The terminal's scrollback: bounded, and always the newest bytes written (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pair.container.terminals import Scrollback

writes = st.lists(st.binary(max_size=300), max_size=60)


@given(limit=st.integers(min_value=1, max_value=1000), chunks=writes)
def test_it_keeps_exactly_the_newest_bytes_up_to_its_limit(limit: int, chunks: list[bytes]) -> None:
    scrollback = Scrollback(limit)
    written = b""
    for chunk in chunks:
        scrollback.append(chunk)
        written += chunk
        assert bytes(scrollback) == written[-limit:]
        assert len(scrollback) == len(bytes(scrollback)) <= limit
    assert scrollback.trimmed == (len(written) > limit)


@given(limit=st.integers(min_value=4, max_value=200), text=st.lists(st.text(max_size=80), max_size=40))
def test_the_replay_starts_on_a_character_boundary(limit: int, text: list[str]) -> None:
    scrollback = Scrollback(limit)
    written = b""
    for piece in text:
        data = piece.encode()
        scrollback.append(data)
        written += data
    replay = scrollback.replay()
    assert written.endswith(replay)
    assert len(bytes(scrollback)) - len(replay) <= 3  # at most the tail of one cut character
    replay.decode()  # whole characters only: a cut sequence at the start was skipped


def test_an_empty_scrollback_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one byte"):
        Scrollback(0)
