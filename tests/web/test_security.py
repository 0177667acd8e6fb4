"""The web page's defences, checked fast against the in-process broker (fake clock): headers,
cookies, CSRF, expiry of sessions and one-time links, escaping, and who may change what."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import sqlite3
from collections.abc import Iterator

import httpx
import pytest
from starlette.testclient import TestClient

from broker import accounts, spaces
from broker.web import auth
from pair.api import models as m
from tests.support.broker import TEST_URL, InProcessBroker

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"


@pytest.fixture
def team(broker: InProcessBroker) -> dict[str, str]:
    return {email: broker.add_user(email) for email in (ALICE, BOB, CAROL)}


@pytest.fixture
def browser(broker: InProcessBroker) -> Iterator[TestClient]:
    """A client with its own cookie jar, as one browser."""
    with TestClient(broker.http.app, base_url=TEST_URL) as client:
        yield client


def create_space(broker: InProcessBroker, owner: str, name: str, *share: str) -> str:
    user = broker.run(accounts.user_by_email(broker.ctx, owner))
    issued = broker.run(spaces.authorize(broker.ctx, user, m.AuthorizeRequest(name=name, share_with=list(share))))
    return issued.space.id


def live_names(broker: InProcessBroker, email: str) -> list[str]:
    user = broker.run(accounts.user_by_email(broker.ctx, email))
    return [s.name for s in broker.run(spaces.visible(broker.ctx, user))]


def hidden_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def sign_in(client: TestClient, email: str, key: str) -> None:
    nonce = hidden_token(client.get("/signin").text)
    response = client.post(
        "/signin", data={"email": email, "auth_key": key, "csrf_token": nonce}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/"


def page_csrf(client: TestClient) -> str:
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', client.get("/").text)
    assert match
    return str(match.group(1))


def set_cookie_header(response: httpx.Response, name: str) -> str:
    return next(h for h in response.headers.get_list("set-cookie") if h.startswith(name + "="))


# -- headers and cookies --------------------------------------------------------------------


def test_every_web_answer_carries_the_security_headers(
    broker: InProcessBroker, browser: TestClient, team: dict[str, str]
) -> None:
    create_space(broker, ALICE, "demo")
    signed_out = [browser.get("/signin"), browser.get("/web/link/pair_wl_nothing")]
    sign_in(browser, ALICE, team[ALICE])
    pages = [*signed_out, browser.get("/"), browser.get("/web/spaces.json")]
    static = [browser.get("/web/static/app.js"), browser.get("/web/static/app.css")]
    for response in pages + static:
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, response.url
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-frame-options"] == "DENY"
    for response in pages:
        assert response.headers["cache-control"] == "no-store"
    assert static[0].headers["content-type"].startswith("text/javascript")


def test_pages_have_no_inline_script_or_style(
    browser: TestClient, broker: InProcessBroker, team: dict[str, str]
) -> None:
    create_space(broker, ALICE, "demo", BOB)
    pages = [browser.get("/signin").text]
    sign_in(browser, ALICE, team[ALICE])
    space_id = create_space(broker, ALICE, "other")
    pages += [browser.get("/").text, browser.get(f"/spaces/{space_id}/delete").text]
    for html in pages:
        scripts = re.findall(r"<script\b[^>]*>", html)
        assert scripts and all('src="/web/static/' in s for s in scripts), scripts
        assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=", html)
        assert "http://" not in html.replace(TEST_URL, "") and "https://" not in html  # nothing from elsewhere


def test_the_session_cookie_is_httponly_samesite_and_secure_on_https(
    broker: InProcessBroker, team: dict[str, str]
) -> None:
    with TestClient(broker.http.app, base_url=TEST_URL) as plain:
        nonce = hidden_token(plain.get("/signin").text)
        response = plain.post(
            "/signin", data={"email": ALICE, "auth_key": team[ALICE], "csrf_token": nonce}, follow_redirects=False
        )
        cookie = set_cookie_header(response, "pair_session")
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/;" in cookie + ";"
        assert f"Max-Age={broker.ctx.settings.web_session_ttl}" in cookie
        assert "Secure" not in cookie
    with TestClient(broker.http.app, base_url="https://testserver") as tls:
        nonce = hidden_token(tls.get("/signin").text)
        response = tls.post(
            "/signin", data={"email": ALICE, "auth_key": team[ALICE], "csrf_token": nonce}, follow_redirects=False
        )
        assert "Secure" in set_cookie_header(response, "pair_session")
        assert response.headers["strict-transport-security"].startswith("max-age=")
    # Behind a TLS proxy the request is http, but the public URL says https.
    broker.ctx.settings = dataclasses.replace(broker.ctx.settings, public_url="https://pair.example.com")
    with TestClient(broker.http.app, base_url=TEST_URL) as proxied:
        assert "Secure" in set_cookie_header(proxied.get("/signin"), "pair_signin")


def test_web_sessions_expire(broker: InProcessBroker, browser: TestClient, team: dict[str, str]) -> None:
    assert broker.ctx.settings.web_session_ttl < broker.ctx.settings.session_ttl
    sign_in(browser, ALICE, team[ALICE])
    broker.clock.advance(broker.ctx.settings.web_session_ttl - 60)
    assert browser.get("/", follow_redirects=False).status_code == 200
    broker.clock.advance(61)
    response = browser.get("/", follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/signin")
    poll = browser.get("/web/spaces.json")
    assert poll.status_code == 401 and poll.json()["code"] == "unauthenticated"


def test_a_cli_session_token_is_not_a_web_cookie(broker: InProcessBroker, team: dict[str, str]) -> None:
    token, _, _ = broker.run(accounts.login(broker.ctx, ALICE, team[ALICE]))
    with TestClient(broker.http.app, base_url=TEST_URL, cookies={"pair_session": token}) as client:
        assert client.get("/", follow_redirects=False).headers["location"] == "/signin"
        assert client.get("/web/spaces.json").status_code == 401


# -- sign in and out ------------------------------------------------------------------------


def test_sign_in_refuses_bad_keys_and_forms_without_their_token(
    broker: InProcessBroker, browser: TestClient, team: dict[str, str]
) -> None:
    nonce = hidden_token(browser.get("/signin").text)
    wrong = browser.post("/signin", data={"email": ALICE, "auth_key": team[BOB], "csrf_token": nonce})
    assert wrong.status_code == 401
    assert "That email and auth key do not match an account on this broker." in wrong.text
    assert f'value="{ALICE}"' in wrong.text  # the email stays filled in
    assert "pair_session" not in browser.cookies

    with TestClient(broker.http.app, base_url=TEST_URL) as forged:  # no sign-in cookie: a cross-site form
        response = forged.post("/signin", data={"email": ALICE, "auth_key": team[ALICE], "csrf_token": nonce})
        assert response.status_code == 403
        assert "pair_session" not in forged.cookies
    cross = browser.post(
        "/signin",
        data={"email": ALICE, "auth_key": team[ALICE], "csrf_token": hidden_token(browser.get("/signin").text)},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert cross.status_code == 403
    assert "pair_session" not in browser.cookies


def test_sign_out_needs_the_token_and_revokes_the_session(
    broker: InProcessBroker, browser: TestClient, team: dict[str, str]
) -> None:
    sign_in(browser, ALICE, team[ALICE])
    cookie = browser.cookies["pair_session"]
    assert browser.post("/signout", follow_redirects=False).status_code == 403
    assert browser.get("/", follow_redirects=False).status_code == 200  # still signed in
    response = browser.post("/signout", data={"csrf_token": page_csrf(browser)}, follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/signin?signed_out")
    assert "You have signed out." in browser.get("/signin?signed_out").text
    with TestClient(broker.http.app, base_url=TEST_URL, cookies={"pair_session": cookie}) as replay:
        assert replay.get("/", follow_redirects=False).headers["location"] == "/signin"


# -- one-time links -------------------------------------------------------------------------


def test_one_time_links_work_once_and_expire(broker: InProcessBroker, team: dict[str, str]) -> None:
    assert broker.http.post("/api/v1/web-links").status_code == 401
    token, _, _ = broker.run(accounts.login(broker.ctx, ALICE, team[ALICE]))
    bearer = {"Authorization": f"Bearer {token}"}

    def new_link() -> str:
        response = broker.http.post("/api/v1/web-links", headers=bearer)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["url"].startswith(f"{TEST_URL}/web/link/pair_wl_")
        return str(body["url"]).removeprefix(TEST_URL)

    link = new_link()
    secret = link.rsplit("/", 1)[1]
    db = sqlite3.connect(broker.ctx.settings.database_path)
    try:
        rows = db.execute("SELECT token_hash, expires_at - created_at FROM web_links").fetchall()
    finally:
        db.close()
    assert rows == [(hashlib.sha256(secret.encode()).hexdigest(), auth.LINK_TTL)]  # stored hashed, minutes long

    assert broker.http.head(link).status_code == 204  # a HEAD (a link checker) does not spend it
    with TestClient(broker.http.app, base_url=TEST_URL) as first:
        response = first.get(link, follow_redirects=False)
        assert (response.status_code, response.headers["location"]) == (303, "/")
        assert ALICE in first.get("/").text
    with TestClient(broker.http.app, base_url=TEST_URL) as second:
        again = second.get(link, follow_redirects=False)
        assert again.status_code == 400 and "expired or was already used" in again.text
        assert "pair_session" not in second.cookies

    late = new_link()
    broker.clock.advance(auth.LINK_TTL + 1)
    with TestClient(broker.http.app, base_url=TEST_URL) as third:
        assert third.get(late, follow_redirects=False).status_code == 400
        assert third.get("/web/link/pair_wl_made-up", follow_redirects=False).status_code == 400


# -- changes: CSRF, ownership, escaping -----------------------------------------------------


def test_changes_without_the_csrf_token_are_refused(
    broker: InProcessBroker, browser: TestClient, team: dict[str, str]
) -> None:
    space_id = create_space(broker, ALICE, "demo")
    sign_in(browser, ALICE, team[ALICE])
    token = page_csrf(browser)
    attempts = [
        browser.post(f"/spaces/{space_id}/delete"),
        browser.post(f"/spaces/{space_id}/delete", data={"csrf_token": "wrong"}),
        browser.post(f"/spaces/{space_id}/delete", headers={"X-CSRF-Token": token.upper()}),
        browser.post(f"/spaces/{space_id}/delete", headers={"X-CSRF-Token": token, "Sec-Fetch-Site": "cross-site"}),
        browser.post(f"/spaces/{space_id}/shares", data={"add": BOB}),
        browser.post(f"/spaces/{space_id}/shares", data={"add": BOB, "csrf_token": ""}),
    ]
    for response in attempts:
        assert response.status_code == 403, response.text
    assert live_names(broker, ALICE) == ["demo"]
    assert live_names(broker, BOB) == []

    done = browser.post(f"/spaces/{space_id}/delete", headers={"X-CSRF-Token": token, "Accept": "application/json"})
    assert done.status_code == 200 and done.json() == {"message": 'Deleted the Space "demo".', "id": space_id}
    assert live_names(broker, ALICE) == []


def test_only_the_owner_can_change_a_space(broker: InProcessBroker, browser: TestClient, team: dict[str, str]) -> None:
    shared = create_space(broker, ALICE, "demo", BOB)
    private = create_space(broker, ALICE, "private")
    sign_in(browser, BOB, team[BOB])
    token = page_csrf(browser)
    html = browser.get("/").text
    assert "Delete demo" not in html and "private" not in html
    for space_id, status in ((shared, 403), (private, 404)):
        for path, data in (("delete", {}), ("shares", {"add": CAROL}), ("shares", {"remove": BOB})):
            response = browser.post(f"/spaces/{space_id}/{path}", data={"csrf_token": token, **data})
            assert response.status_code == status, (path, response.text)
        assert browser.get(f"/spaces/{space_id}/delete").status_code == status
        assert browser.get(f"/web/spaces/{space_id}/row").status_code == (200 if space_id == shared else 404)
    assert sorted(live_names(broker, ALICE)) == ["demo", "private"]
    assert live_names(broker, BOB) == ["demo"]
    assert live_names(broker, CAROL) == []


def test_forms_without_javascript_redirect_with_a_signed_flash(
    broker: InProcessBroker, browser: TestClient, team: dict[str, str]
) -> None:
    space_id = create_space(broker, ALICE, "demo")
    sign_in(browser, ALICE, team[ALICE])
    token = page_csrf(browser)
    response = browser.post(
        f"/spaces/{space_id}/shares", data={"csrf_token": token, "add": BOB}, follow_redirects=False
    )
    assert (response.status_code, response.headers["location"]) == (303, "/")
    assert f"&#34;demo&#34; is now shared with {BOB}." in browser.get("/").text
    assert "is now shared" not in browser.get("/").text  # shown once
    assert live_names(broker, BOB) == ["demo"]

    browser.cookies.set("pair_flash", "WyJvayIsICJIZWxsbyJd.0000")  # ["ok", "Hello"], badly signed
    html = browser.get("/").text
    assert "Hello" not in html  # a flash this broker did not sign is ignored
    assert re.search(r'id="flash"[^>]*hidden', html)


def test_user_text_is_escaped(broker: InProcessBroker, browser: TestClient, team: dict[str, str]) -> None:
    odd = "<b>eve</b>@example.com"  # a valid address as far as the broker's rule goes
    broker.add_user(odd)
    create_space(broker, ALICE, "demo", odd)
    sign_in(browser, ALICE, team[ALICE])
    html = browser.get("/").text
    assert "<b>eve</b>" not in html
    assert "&lt;b&gt;eve&lt;/b&gt;@example.com" in html
    row = browser.get(f"/web/spaces/{create_space(broker, ALICE, 'other')}/row").text
    assert "<b>" not in row and "&lt;b&gt;eve" in row  # offered in the share list, escaped

    with TestClient(broker.http.app, base_url=TEST_URL) as other:
        nonce = hidden_token(other.get("/signin").text)
        echoed = other.post(
            "/signin", data={"email": '"><script>alert(1)</script>', "auth_key": "x", "csrf_token": nonce}
        )
        assert echoed.status_code == 401
        assert "<script>alert(1)" not in echoed.text and "&lt;script&gt;alert(1)" in echoed.text


def test_the_poll_is_read_only_json(broker: InProcessBroker, browser: TestClient, team: dict[str, str]) -> None:
    assert browser.get("/web/spaces.json").status_code == 401
    create_space(broker, ALICE, "demo", BOB)
    sign_in(browser, ALICE, team[ALICE])
    data = browser.get("/web/spaces.json").json()
    assert data["heading"] == "You have one Container Space."
    [space] = data["spaces"]
    assert (space["name"], space["state"], space["state_label"], space["owned"]) == ("demo", "created", "Created", True)
    assert (space["shared_with"], space["can_add"]) == ([BOB], [CAROL])
    assert browser.post("/web/spaces.json").status_code == 405
