"""broker.apps.auth: tickets and app cookies (tampering, wrong host, expiry, replay), the state
that binds a sign-in to one browser, redirects that never leave the app origin, the secret."""

from __future__ import annotations

import asyncio
import os
import stat
import threading
from contextlib import AbstractContextManager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.apps import auth
from broker.apps.auth import AppCredentials, CredentialRejected, UsedTickets

SECRET = b"s" * 32
HOST = "8080--demo--alice.apps.example.com"
NOW = 1_800_000_000


def credentials() -> AppCredentials:
    return AppCredentials(SECRET)


def issue(**overrides: object) -> tuple[str, str]:
    state, digest = auth.new_state()
    values: dict[str, object] = {
        "user_id": "usr_bob",
        "host": HOST,
        "state_digest": digest,
        "next_path": "/app?x=1",
        "now": NOW,
        "session_id": "ses_1",
    }
    values.update(overrides)
    return credentials().ticket(**values), state  # type: ignore[arg-type]


def rejected(code: str) -> AbstractContextManager[pytest.ExceptionInfo[CredentialRejected]]:
    return pytest.raises(CredentialRejected, match=f"^{code}$")


# -- tickets --------------------------------------------------------------------------------


def test_a_ticket_opens_on_its_host_in_its_browser() -> None:
    ticket, state = issue()
    grant = credentials().open_ticket(ticket, host=HOST.upper(), state=state, now=NOW + 59)
    assert (grant.user_id, grant.host, grant.session_id, grant.next_path) == ("usr_bob", HOST, "ses_1", "/app?x=1")
    assert grant.expires_at == NOW + auth.TICKET_TTL


def test_a_ticket_for_another_host_is_refused() -> None:
    ticket, state = issue()
    with rejected("wrong_host"):
        credentials().open_ticket(ticket, host="8080--demo--mallory.apps.example.com", state=state, now=NOW)


def test_a_ticket_expires() -> None:
    ticket, state = issue()
    with rejected("expired"):
        credentials().open_ticket(ticket, host=HOST, state=state, now=NOW + auth.TICKET_TTL)


def test_a_ticket_works_only_in_the_browser_that_started_the_sign_in() -> None:
    ticket, _ = issue()
    other_state, _ = auth.new_state()
    with rejected("wrong_state"):
        credentials().open_ticket(ticket, host=HOST, state=other_state, now=NOW)
    with rejected("wrong_state"):
        credentials().open_ticket(ticket, host=HOST, state="", now=NOW)


def test_a_ticket_is_not_a_cookie_nor_a_cookie_a_ticket() -> None:
    ticket, state = issue()
    with rejected("wrong_kind"):
        credentials().open_cookie(ticket, host=HOST, now=NOW)
    cookie = credentials().cookie(user_id="usr_bob", host=HOST, now=NOW, ttl=3600)
    with rejected("wrong_kind"):
        credentials().open_ticket(cookie, host=HOST, state=state, now=NOW)


def test_another_secret_does_not_verify() -> None:
    ticket, state = issue()
    with rejected("bad_signature"):
        AppCredentials(b"t" * 32).open_ticket(ticket, host=HOST, state=state, now=NOW)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        AppCredentials(b"short")


FIXED_TICKET = issue()  # one ticket for every example, so that examples replay exactly


@given(st.data())
def test_any_change_to_a_ticket_is_refused(data: st.DataObject) -> None:
    ticket, state = FIXED_TICKET
    position = data.draw(st.integers(0, len(ticket) - 1))
    replacement = data.draw(st.sampled_from("AZaz09-_.=+/ ").filter(lambda c: c != ticket[position]))
    changed = ticket[:position] + replacement + ticket[position + 1 :]
    with pytest.raises(CredentialRejected):
        credentials().open_ticket(changed, host=HOST, state=state, now=NOW)


@pytest.mark.parametrize("junk", ["", "pair_app1", "pair_app1..", "x.y.z", "pair_app1.e30.", "pair_app1." + "a" * 5000])
def test_junk_is_malformed(junk: str) -> None:
    with rejected("malformed"):
        credentials().open_cookie(junk, host=HOST, now=NOW)


def test_a_ticket_works_once() -> None:
    ticket, state = issue()
    ledger = UsedTickets()

    async def twice() -> None:
        grant = await auth.redeem(credentials(), ledger, ticket=ticket, host=HOST, state=state, now=NOW)
        assert grant.user_id == "usr_bob"
        with rejected("replayed"):
            await auth.redeem(credentials(), ledger, ticket=ticket, host=HOST, state=state, now=NOW + 1)

    asyncio.run(twice())


def test_the_ledger_forgets_only_what_expired() -> None:
    ledger = UsedTickets()

    async def run() -> None:
        for i in range(3000):
            assert await ledger.claim(f"old{i}", NOW + 60, NOW)
        assert await ledger.claim("live", NOW + 1000, NOW + 100)
        assert len(ledger._expiry) < 1100  # pruned: expired nonces are dropped
        assert not await ledger.claim("live", NOW + 1000, NOW + 200)  # still remembered

    asyncio.run(run())


# -- app cookies ----------------------------------------------------------------------------


def test_an_app_cookie_is_bound_to_its_host_and_expires() -> None:
    value = credentials().cookie(user_id="usr_bob", host=HOST, now=NOW, ttl=3600, session_id="ses_1")
    grant = credentials().open_cookie(value, host=HOST, now=NOW + 3599)
    assert (grant.user_id, grant.session_id) == ("usr_bob", "ses_1")
    with rejected("wrong_host"):
        credentials().open_cookie(value, host="8081--demo--alice.apps.example.com", now=NOW)
    with rejected("expired"):
        credentials().open_cookie(value, host=HOST, now=NOW + 3600)


def test_signing_in_sets_a_host_only_cookie_and_clears_the_state() -> None:
    ticket, state = issue()
    grant = credentials().open_ticket(ticket, host=HOST, state=state, now=NOW)
    headers = auth.signed_in_headers(credentials(), grant, now=NOW, ttl=3600, secure=True)
    cookies = [v.decode() for n, v in headers if n == b"set-cookie"]
    assert dict(headers)[b"location"] == b"/app?x=1"
    assert dict(headers)[b"referrer-policy"] == b"no-referrer"
    assert dict(headers)[b"cache-control"] == b"no-store"
    app_cookie = next(c for c in cookies if c.startswith("__Host-pair_app="))
    attributes = [a.strip().lower() for a in app_cookie.split(";")[1:]]
    assert sorted(attributes) == sorted(["path=/", "max-age=3600", "httponly", "samesite=lax", "secure"])
    value = app_cookie.split(";")[0].partition("=")[2]
    assert credentials().open_cookie(value, host=HOST, now=NOW).user_id == "usr_bob"
    assert any(c.startswith("__Host-pair_app_state=;") and "Max-Age=0" in c for c in cookies)


def test_http_origins_use_plain_names_without_secure() -> None:
    assert auth.cookie_names(secure=False) == ("__pair_app", "__pair_app_state")
    cookie = auth.set_cookie("__pair_app", "v", max_age=60, secure=False).decode()
    assert "Secure" not in cookie
    assert "Domain" not in cookie
    assert {"__pair_app", "__pair_app_state", "__Host-pair_app", "__Host-pair_app_state"} == auth.COOKIE_NAMES


def test_read_cookie() -> None:
    assert auth.read_cookie("a=1; __pair_app=v.w.x; b=2", "__pair_app") == "v.w.x"
    assert auth.read_cookie("a=1", "__pair_app") == ""
    assert auth.read_cookie("x__pair_app=1", "__pair_app") == ""


# -- redirects ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kept"),
    [
        ("/", True),
        ("/app/page?x=1&y=%20#frag", True),
        ("//evil.example.com/", False),
        ("/\\evil.example.com", False),
        ("/a\\b", False),
        ("https://evil.example.com/", False),
        ("javascript:alert(1)", False),
        ("", False),
        ("/a b", False),
        ("/a\nb", False),
        ("/" + "a" * 3000, False),
    ],
)
def test_the_next_path_never_leaves_the_origin(path: str, kept: bool) -> None:
    assert auth.safe_next(path) == (path if kept else "/")


@given(st.text(max_size=200))
def test_any_next_path_stays_on_the_origin(path: str) -> None:
    safe = auth.safe_next(path)
    assert safe.startswith("/")
    assert not safe.startswith(("//", "/\\"))
    assert urlsplit("https://" + HOST + safe).netloc == HOST


def test_the_sign_in_round_trip_urls() -> None:
    _, digest = auth.new_state()
    url = auth.signin_url(
        "https://pair.example.com/", "/web/apps/signin", host=HOST, state_digest=digest, next_path="//evil"
    )
    parts = urlsplit(url)
    assert (parts.netloc, parts.path) == ("pair.example.com", "/web/apps/signin")
    assert parse_qs(parts.query) == {"host": [HOST], "state": [digest], "next": ["/"]}
    back = urlsplit(auth.return_url(f"https://{HOST}", "pair_app1.a.b"))
    assert (back.netloc, back.path, parse_qs(back.query)) == (HOST, auth.AUTH_PATH, {"ticket": ["pair_app1.a.b"]})


# -- the secret -----------------------------------------------------------------------------


def test_the_secret_is_made_once_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "data" / "apps.secret"
    first = auth.load_secret(path)
    assert len(first) == auth.SECRET_BYTES
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert auth.load_secret(path) == first
    assert [p.name for p in path.parent.iterdir()] == ["apps.secret"]  # no temporary file left


def test_processes_starting_together_agree_on_one_secret(tmp_path: Path) -> None:
    path = tmp_path / "apps.secret"
    results: list[bytes] = []
    start = threading.Barrier(8)

    def load() -> None:
        start.wait()
        results.append(auth.load_secret(path))

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8
    assert len(set(results)) == 1


def test_a_short_secret_file_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "apps.secret"
    path.write_bytes(b"short")
    with pytest.raises(ValueError, match="delete it"):
        auth.load_secret(path)
