"""broker.apps.forwarding: the header rules of the app proxy, and the WebSocket close-code mapping."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from broker.apps import auth
from broker.apps.forwarding import (
    ProxyOptions,
    body_framing,
    downstream_headers,
    error_page,
    strip_cookies,
    upstream_headers,
)
from broker.apps.websocket import to_app_code, to_browser_code

OPTIONS = ProxyOptions(
    credential_cookies=frozenset({"pair_session", "pair_signin", "pair_flash"}) | auth.COOKIE_NAMES,
    authorization_prefixes=("pair_",),
)
PUBLIC = b"8080--demo--alice.apps.example.com"


def scope(*headers: tuple[bytes, bytes], client: tuple[str, int] | None = ("203.0.113.7", 5000)) -> dict[str, Any]:
    return {
        "type": "http",
        "scheme": "https",
        "headers": [(b"host", PUBLIC), *headers],
        "client": client,
        "server": ("127.0.0.1", 8000),
    }


def names(headers: list[tuple[bytes, bytes]]) -> list[bytes]:
    return [n for n, _ in headers]


def test_hop_by_hop_fields_and_those_connection_names_are_removed() -> None:
    out = upstream_headers(
        scope(
            (b"connection", b"keep-alive, X-Custom-Hop"),
            (b"x-custom-hop", b"1"),
            (b"keep-alive", b"timeout=5"),
            (b"proxy-connection", b"keep-alive"),
            (b"proxy-authorization", b"Basic eA=="),
            (b"te", b"trailers"),
            (b"trailer", b"x-checksum"),
            (b"transfer-encoding", b"chunked"),
            (b"upgrade", b"h2c"),
            (b"expect", b"100-continue"),
            (b"content-length", b"5"),
            (b"accept", b"text/html"),
        ),
        8080,
        OPTIONS,
    )
    assert names(out) == [
        b"host",
        b"accept",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"forwarded",
    ]


def test_the_app_sees_localhost_and_the_public_host_in_the_forwarding_fields() -> None:
    out = dict(upstream_headers(scope(), 5173, OPTIONS))
    assert out[b"host"] == b"localhost:5173"
    assert out[b"x-forwarded-host"] == PUBLIC
    assert out[b"x-forwarded-proto"] == b"https"
    assert out[b"x-forwarded-for"] == b"203.0.113.7"
    assert out[b"forwarded"] == b"for=203.0.113.7;host=" + PUBLIC + b";proto=https"
    preserved = dict(upstream_headers(scope(), 5173, ProxyOptions(preserve_host=True)))
    assert preserved[b"host"] == PUBLIC


def test_forwarded_quotes_ipv6_and_ports_and_omits_an_unknown_client() -> None:
    s = scope(client=("2001:db8::1", 5000))
    s["headers"] = [(b"host", b"8080--demo--alice.localhost:8000")]
    out = dict(upstream_headers(s, 8080, OPTIONS))
    assert out[b"forwarded"] == b'for="[2001:db8::1]";host="8080--demo--alice.localhost:8000";proto=https'
    out = dict(upstream_headers(scope(client=None), 8080, OPTIONS))
    assert b"x-forwarded-for" not in out
    assert out[b"forwarded"] == b"host=" + PUBLIC + b";proto=https"


def test_what_the_browser_claims_about_forwarding_is_dropped() -> None:
    out = upstream_headers(
        scope(
            (b"x-forwarded-for", b"6.6.6.6"),
            (b"x-forwarded-host", b"evil.example.com"),
            (b"x-forwarded-proto", b"http"),
            (b"x-forwarded-port", b"1"),
            (b"x-forwarded-prefix", b"/evil"),
            (b"x-real-ip", b"6.6.6.6"),
            (b"forwarded", b"for=6.6.6.6"),
        ),
        8080,
        OPTIONS,
    )
    assert b"6.6.6.6" not in b"".join(v for _, v in out)
    assert b"evil" not in b"".join(v for _, v in out)


def test_broker_credentials_never_leave() -> None:
    out = upstream_headers(
        scope(
            (b"cookie", b"pair_session=SECRET; theme=dark; __Host-pair_app=APP; pair_flash=F"),
            (b"cookie", b"pair_signin=S"),
            (b"authorization", b"Bearer pair_st_abc"),
        ),
        8080,
        OPTIONS,
    )
    assert [(n, v) for n, v in out if n in (b"cookie", b"authorization")] == [(b"cookie", b"theme=dark")]
    kept = dict(upstream_headers(scope((b"authorization", b"Basic dXNlcjpwYXNz")), 8080, OPTIONS))
    assert kept[b"authorization"] == b"Basic dXNlcjpwYXNz"  # the app's own credentials pass


COOKIE_NAMES = st.sampled_from(["pair_session", "__pair_app", "__Host-pair_app_state", "theme", "sid", "pair_sessionx"])


@given(st.lists(st.tuples(COOKIE_NAMES, st.from_regex(r"[A-Za-z0-9._-]{0,12}", fullmatch=True)), max_size=8))
def test_cookie_stripping_removes_exactly_the_credentials(pairs: list[tuple[str, str]]) -> None:
    field = "; ".join(f"{n}={v}" for n, v in pairs).encode()
    kept = strip_cookies(field, OPTIONS).decode()
    expected = [f"{n}={v}" for n, v in pairs if n not in OPTIONS.credential_cookies]
    assert kept == "; ".join(expected)


def test_the_body_framing_comes_from_the_original_fields() -> None:
    assert body_framing([(b"content-length", b"12"), (b"connection", b"content-length")]) == 12
    assert body_framing([(b"transfer-encoding", b"chunked")]) == "chunked"
    assert body_framing([(b"accept", b"*/*")]) is None


def test_responses_lose_hop_by_hop_fields_and_date() -> None:
    out = downstream_headers(
        [
            (b"Connection", b"X-App-Hop, close"),
            (b"X-App-Hop", b"1"),
            (b"Keep-Alive", b"timeout=99"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Proxy-Authenticate", b"Basic"),
            (b"Date", b"Mon, 01 Jan 2024 00:00:00 GMT"),
            (b"Content-Type", b"text/plain"),
            (b"Content-Length", b"3"),
        ],
        port=8080,
        origin=b"https://" + PUBLIC,
        options=OPTIONS,
    )
    assert out == [(b"content-type", b"text/plain"), (b"content-length", b"3")]


def test_redirects_to_the_apps_local_address_come_back_to_its_public_origin() -> None:
    def location(value: bytes, preserve: bool = False) -> bytes:
        options = ProxyOptions(preserve_host=preserve)
        return dict(
            downstream_headers([(b"location", value)], port=8080, origin=b"https://" + PUBLIC, options=options)
        )[b"location"]

    assert location(b"http://localhost:8080/login?next=/") == b"https://" + PUBLIC + b"/login?next=/"
    assert location(b"http://127.0.0.1:8080") == b"https://" + PUBLIC
    assert location(b"http://localhost:8080?x") == b"https://" + PUBLIC + b"?x"
    assert location(b"http://localhost:80801/") == b"http://localhost:80801/"  # another port
    assert location(b"http://localhost:8081/") == b"http://localhost:8081/"
    assert location(b"https://github.com/login") == b"https://github.com/login"
    assert location(b"/relative") == b"/relative"
    assert location(b"http://localhost:8080/x", preserve=True) == b"http://localhost:8080/x"


def test_apps_cannot_set_cookies_for_their_siblings_or_the_proxys_own() -> None:
    out = downstream_headers(
        [
            (b"set-cookie", b"theme=dark; Domain=apps.example.com; Path=/; HttpOnly"),
            (b"set-cookie", b"a=1;domain=.example.com"),
            (b"set-cookie", b"__Host-pair_app=forged; Path=/; Secure"),
            (b"set-cookie", b"pair_session=forged"),
            (b"set-cookie", b"lang=en"),
        ],
        port=8080,
        origin=b"https://" + PUBLIC,
        options=OPTIONS,
    )
    assert out == [
        (b"set-cookie", b"theme=dark; Path=/; HttpOnly"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"lang=en"),
    ]


def test_the_error_page_escapes_what_it_shows() -> None:
    headers, body = error_page(502, "<b>title</b>", 'Port "8080" <script>alert(1)</script>')
    assert b"<script>" not in body
    assert b"&lt;script&gt;" in body
    assert b"&lt;b&gt;title&lt;/b&gt;" in body
    assert dict(headers)[b"content-length"] == str(len(body)).encode()
    assert dict(headers)[b"content-security-policy"] == b"default-src 'none'"


def test_close_codes_no_endpoint_may_send_are_mapped() -> None:
    assert to_app_code(4000) == 4000
    assert to_app_code(1000) == 1000
    assert to_app_code(1005) == 1005  # wsproto then sends a close frame without a code
    assert to_app_code(1006) == 1001  # the browser vanished: going away
    assert to_app_code(1004) == 1000
    assert to_browser_code(4001) == 4001
    assert to_browser_code(1005) == 1000
    assert to_browser_code(1006) == 1014  # the app vanished: bad gateway
    assert to_browser_code(1015) == 1014
    assert to_browser_code(2999) == 1014
