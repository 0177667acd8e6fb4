"""The web page's defences, checked fast against the in-process broker (fake clock): headers,
cookies, CSRF, expiry of sessions and one-time links, escaping, and who may change what."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import sqlite3
from collections.abc import Iterator

import httpx
import markupsafe
import pytest
from starlette.testclient import TestClient

from broker import accounts, credentials, spaces
from broker.store import StreamRecord, UserRecord
from broker.web import auth
from pair.api import models as m
from pair.api.fields import value_text
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


def test_the_session_cookie_is_httponly_samesite_and_host_prefixed_on_https(
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
        cookie = set_cookie_header(response, "__Host-pair_session")  # no other origin can set it
        assert "Secure" in cookie and "Path=/;" in cookie + ";" and "Domain" not in cookie
        assert response.headers["strict-transport-security"].startswith("max-age=")
        assert tls.get("/", follow_redirects=False).status_code == 200  # signed in by that cookie
        tls.cookies.set("pair_session", "pair_ws_planted")  # an unprefixed one is never read on https
        assert tls.get("/", follow_redirects=False).status_code == 200
    # Behind a TLS proxy the request is http, but the public URL says https.
    broker.ctx.settings = dataclasses.replace(broker.ctx.settings, public_url="https://pair.example.com")
    with TestClient(broker.http.app, base_url=TEST_URL) as proxied:
        assert "Secure" in set_cookie_header(proxied.get("/signin"), "__Host-pair_signin")


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

    # A malformed email names no account: the grammar's sentence, as the API and `pair login` say,
    # not "do not match" (reproduction: it was 401 bad_credentials).
    for email in ("not an email", "alice@\u202eexample.com"):
        refused = browser.post(
            "/signin",
            data={"email": email, "auth_key": team[ALICE], "csrf_token": hidden_token(browser.get("/signin").text)},
        )
        assert refused.status_code == 422
        said = f"{value_text(email)} is not an email address. An email address has the form name@example.com"
        assert str(markupsafe.escape(said)) in refused.text, refused.text
        assert "do not match an account" not in refused.text
        assert "pair_session" not in browser.cookies
    unknown = browser.post(
        "/signin",
        data={
            "email": "nobody@example.com",
            "auth_key": team[ALICE],
            "csrf_token": hidden_token(browser.get("/signin").text),
        },
    )
    assert unknown.status_code == 401 and "That email and auth key do not match an account" in unknown.text

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
        # a shared port's app under the broker's domain is same-site: the token alone must not do
        browser.post(f"/spaces/{space_id}/delete", headers={"X-CSRF-Token": token, "Sec-Fetch-Site": "same-site"}),
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
    # The broker refuses such an email now (pair.api.grammar); an account made before it did
    # keeps its row, and the page must still escape it where it leaves.
    odd = "<b>eve</b>@example.com"
    eve = UserRecord(credentials.new_id("usr_"), odd, False, int(broker.clock()))
    broker.run(broker.ctx.store.create_user(eve, credentials.digest(credentials.new_secret(credentials.AUTH_KEY))))
    demo = create_space(broker, ALICE, "demo")
    broker.run(broker.ctx.store.update_shares(demo, [eve.id], [], int(broker.clock())))
    sign_in(browser, ALICE, team[ALICE])
    html = browser.get("/").text
    assert "<b>eve</b>" not in html
    assert "&lt;b&gt;eve&lt;/b&gt;@example.com" in html
    other = create_space(broker, ALICE, "other")
    row = browser.get(f"/web/spaces/{other}/row").text
    assert "<b>" not in row and "\\u003cb\\u003eeve" in row  # offered for sharing, as escaped JSON
    chooser = browser.get(f"/spaces/{other}/share").text
    assert "<b>" not in chooser and 'value="&lt;b&gt;eve&lt;/b&gt;@example.com"' in chooser

    with TestClient(broker.http.app, base_url=TEST_URL) as other:
        nonce = hidden_token(other.get("/signin").text)
        echoed = other.post(
            "/signin", data={"email": '"><script>alert(1)</script>', "auth_key": "x", "csrf_token": nonce}
        )
        assert echoed.status_code == 422  # no address: the Email type's sentence, which quotes it
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


# -- who is here, creating a Space, words ---------------------------------------------------


def test_who_is_here_shows_addresses_to_the_owner_only(
    broker: InProcessBroker, browser: TestClient, team: dict[str, str]
) -> None:
    space_id = create_space(broker, ALICE, "demo", BOB)
    teammate, stranger = TestClient(broker.http.app, base_url=TEST_URL), TestClient(broker.http.app, base_url=TEST_URL)
    sign_in(browser, ALICE, team[ALICE])
    sign_in(teammate, BOB, team[BOB])
    sign_in(stranger, CAROL, team[CAROL])
    bob = broker.run(accounts.user_by_email(broker.ctx, BOB))
    now = broker.ctx.now()
    for n, address in enumerate(("10.1.2.3:50000", "10.1.2.3:50001", "192.0.2.9:40000")):
        record = StreamRecord(f"tun_{n}", space_id, bob.id, BOB, address, now - 300 + n)
        broker.run(broker.ctx.store.open_stream(record))

    [owner_view] = browser.get("/web/spaces.json").json()["spaces"]
    [visitor] = owner_view["here"]
    assert (visitor["email"], visitor["since_text"], visitor["streams"]) == (BOB, "5 minutes ago", 3)
    assert (visitor["addresses"], visitor["more"]) == (
        ["10.1.2.3", "192.0.2.9"],
        ", 3 sessions, from 10.1.2.3, 192.0.2.9",
    )
    assert "from 10.1.2.3, 192.0.2.9" in browser.get("/").text

    [shared_view] = teammate.get("/web/spaces.json").json()["spaces"]
    assert [(v["email"], v["streams"], v["addresses"], v["more"]) for v in shared_view["here"]] == [
        (BOB, 3, [], ", 3 sessions")
    ]
    assert "10.1.2.3" not in teammate.get("/").text + teammate.get(f"/web/spaces/{space_id}/row").text
    assert stranger.get("/web/spaces.json").json()["spaces"] == []
    assert stranger.get(f"/web/spaces/{space_id}/row").status_code == 404


def test_creating_a_space_needs_the_token_and_writes_what_the_cli_writes(
    broker: InProcessBroker, browser: TestClient, team: dict[str, str]
) -> None:
    assert browser.get("/spaces/new", follow_redirects=False).headers["location"] == "/signin"
    assert browser.post("/spaces/new", data={"name": "x"}).status_code == 401
    sign_in(browser, ALICE, team[ALICE])
    token = page_csrf(browser)
    form = browser.get("/spaces/new").text
    assert f'value="{BOB}"' in form and f'value="{CAROL}"' in form and f'value="{ALICE}"' not in form
    for refused in (
        browser.post("/spaces/new", data={"name": "forged"}),
        browser.post(
            "/spaces/new", data={"name": "forged", "csrf_token": token}, headers={"Sec-Fetch-Site": "cross-site"}
        ),
    ):
        assert refused.status_code == 403
    assert live_names(broker, ALICE) == []

    done = browser.post(
        "/spaces/new",
        content=f"csrf_token={token}&name=demo&share_with={BOB}&share_with={CAROL}",
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
    )
    assert done.status_code == 200 and done.headers["cache-control"] == "no-store"
    body = done.json()
    assert body["ok"] is True
    jwt = re.search(r'<code id="space-token">([^<]+)</code>', body["html"])
    assert jwt and body["html"].count(jwt.group(1)) == 3  # shown, copied, downloaded: all from this answer
    assert 'download="SPACE_ID.txt"' in body["html"] and "valid for 1 hour" in body["html"]
    assert live_names(broker, BOB) == ["demo"] and live_names(broker, CAROL) == ["demo"]
    rows = broker.run(broker.ctx.store.audit_log(limit=10, action="space"))
    assert [(r.actor, r.action, r.detail) for r in rows if r.action != "space.token"] == [
        (ALICE, "space.create", "demo, no template"),
        (ALICE, "space.share", BOB),
        (ALICE, "space.share", CAROL),
    ]

    again = browser.post("/spaces/new", data={"csrf_token": token, "name": "demo", "share_with": BOB})
    assert again.status_code == 409
    assert 'aria-invalid="true"' in again.text and 'id="create-error"' in again.text
    assert "--name" not in again.text and "`" not in again.text  # the page's words, not the CLI's flags
    assert f'value="{BOB}" checked' in again.text  # what was chosen stays chosen
    unknown = browser.post("/spaces/new", data={"csrf_token": token, "share_with": "nobody@example.com"})
    assert unknown.status_code == 422 and "No account on this broker for nobody@example.com." in unknown.text
    assert live_names(broker, ALICE) == ["demo"]


def test_the_share_chooser_is_the_owners_only(
    broker: InProcessBroker, browser: TestClient, team: dict[str, str]
) -> None:
    shared, private = create_space(broker, ALICE, "demo", BOB), create_space(broker, ALICE, "private")
    sign_in(browser, BOB, team[BOB])
    assert browser.get(f"/spaces/{shared}/share").status_code == 403
    assert browser.get(f"/spaces/{private}/share").status_code == 404
    with TestClient(broker.http.app, base_url=TEST_URL) as owner:
        sign_in(owner, ALICE, team[ALICE])
        chooser = owner.get(f"/spaces/{shared}/share").text
        assert f'value="{CAROL}"' in chooser and f'value="{BOB}"' not in chooser  # bob has it already
        assert "checked" not in chooser  # nobody is chosen for you


def test_a_wrong_key_is_answered_in_words_for_a_person(browser: TestClient, team: dict[str, str]) -> None:
    nonce = hidden_token(browser.get("/signin").text)
    wrong = browser.post("/signin", data={"email": ALICE, "auth_key": team[BOB], "csrf_token": nonce})
    assert "ask your admin for a new key" in wrong.text
    assert "`" not in wrong.text and "pair-broker" not in wrong.text and "reset-key" not in wrong.text
    key_field = re.search(r'<input id="auth_key"[^>]*>', wrong.text)
    assert key_field and 'aria-describedby="signin-error auth-key-help"' in key_field.group(0)
    assert "autofocus" in key_field.group(0)  # the error is tied to the field that gets focus
    email_field = re.search(r'<input id="email"[^>]*>', wrong.text)
    assert email_field and "signin-error" not in email_field.group(0)


def test_ways_in_name_each_space_as_the_cli_reads_it(
    broker: InProcessBroker, browser: TestClient, team: dict[str, str]
) -> None:
    mine = create_space(broker, ALICE, "demo")
    bobs = create_space(broker, BOB, "demo", ALICE)  # the same name, someone else's
    create_space(broker, BOB, "solo", ALICE)
    sign_in(browser, ALICE, team[ALICE])
    ways = {
        s["id"]: [(w["key"], w["command"], w["setup"]) for w in s["ways"]]
        for s in browser.get("/web/spaces.json").json()["spaces"]
    }
    assert ways[mine] == [
        ("connect", f"pair spaces connect {mine}", ""),  # "demo" would be ambiguous: the id
        ("ssh", "ssh demo.pair", "pair spaces ssh-config"),  # your own keeps the plain alias
    ]
    assert ways[bobs] == [
        ("connect", f"pair spaces connect {bobs}", ""),
        ("ssh", "ssh demo.bob.pair", "pair spaces ssh-config"),
    ]
    solo = next(i for i in ways if i not in (mine, bobs))
    assert ways[solo][0] == ("connect", "pair spaces connect solo", "")
    html = browser.get("/").text
    assert 'data-copy="ssh demo.bob.pair"' in html and 'aria-label="Copy: pair spaces connect solo"' in html
