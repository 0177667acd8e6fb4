"""pair.config.check_broker_url: the one check where a broker URL enters the CLI (--url, PAIR_URL,
the saved files, a container's PAIR_URL). What it accepts, httpx accepts; what httpx refuses, it
refuses in one sentence instead of a traceback."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pair.api.errors import PairError
from pair.config import check_broker_url

urls = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda scheme, host, port, tail: f"{scheme}://{host}{port}{tail}",
        st.sampled_from(["http", "https", "ftp", "HTTP", ""]),
        st.sampled_from(["127.0.0.1", "[::1]", "[::1", "pair.example.com", "", "exa mple.com", "h\x1b"]),
        st.one_of(
            st.just(""), st.integers(min_value=-1, max_value=200_000).map(lambda n: f":{n}"), st.text(max_size=4)
        ),
        st.text(max_size=12),
    ),
)


@settings(max_examples=400, deadline=None)
@given(url=urls)
def test_what_it_accepts_httpx_can_request_and_what_it_refuses_is_one_line(url: str) -> None:
    refused: PairError | None = None
    try:
        checked = check_broker_url(url, "--url")
    except PairError as exc:
        refused = exc
    if refused is not None:
        assert "\n" not in refused.message and refused.message.isprintable(), refused.message
        assert "(--url)" in refused.message and refused.hint
        return
    request = httpx.Client().build_request("GET", checked + "/api/v1/me")  # raises if httpx would
    assert request.url.scheme in ("http", "https") and request.url.host
    assert request.url.port is None or 1 <= request.url.port <= 65535


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/", "https://pair.example.com", "http://[::1]:9/prefix"])
def test_ordinary_urls_pass_without_their_trailing_slash(url: str) -> None:
    assert check_broker_url(url, "PAIR_URL") == url.rstrip("/")
