"""broker.web.security's secret shown once after a redirect: sealed for one session, opened by
that session only, and anything else a browser might send is refused, never an exception."""

from __future__ import annotations

import secrets

from hypothesis import given
from hypothesis import strategies as st

from broker.web import security


def test_only_the_session_it_was_sealed_for_opens_it() -> None:
    session, other = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    key = "pair_ak_" + secrets.token_urlsafe(32)
    sealed = security.seal_secret(session, key)
    assert key not in sealed and key.removeprefix("pair_ak_") not in sealed
    assert security.open_secret(session, sealed) == key
    assert security.open_secret(other, sealed) is None
    assert security.seal_secret(session, key) != sealed  # a fresh nonce each time
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    assert security.open_secret(session, flipped) is None


@given(st.text(max_size=200))
def test_anything_else_sent_as_the_cookie_opens_to_nothing(value: str) -> None:
    assert security.open_secret("a-session-token", value) is None
