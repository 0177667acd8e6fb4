"""The web page in a real browser (Debian's Chromium through Playwright) against a real
`pair-broker serve`, checked against what the real `pair` CLI then sees."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from pair.api.client import Client
from pair.api.models import Heartbeat, SshHealth
from pair.container.home import Home
from tests.support.broker import RealBroker
from tests.support.people import Person
from tests.web.conftest import Screenshot
from tests.web.pages import authorize, axe, axe_source, bootstrap, card, count, csrf, names, sign_in

pytestmark = pytest.mark.integration


def test_sign_in_see_delete_and_cancel(
    page: Page,
    browser: Browser,
    context: BrowserContext,
    live_broker: RealBroker,
    team: dict[str, Person],
    tmp_path: Path,
    screenshot: Screenshot,
) -> None:
    alice, bob = team["alice"], team["bob"]
    authorize(alice, "dynamic_stark", bob.email)
    token = authorize(alice, "calm_turing")
    bootstrap(alice, token, tmp_path / "container", CODESPACES="true")
    authorize(bob, "bobs_box", alice.email)

    sign_in(page, alice)
    expect(count(page)).to_have_text("You have 3 Container Spaces.")
    expect(card(page, "dynamic_stark")).to_contain_text("Created")
    expect(card(page, "dynamic_stark").get_by_role("heading", level=2)).to_have_text("dynamic_stark")  # no sp_… id
    expect(card(page, "dynamic_stark")).to_contain_text(bob.email)
    expect(card(page, "calm_turing").locator(".status")).to_have_text("Starting")
    expect(card(page, "calm_turing")).to_contain_text("GitHub Codespaces")
    expect(card(page, "bobs_box")).to_contain_text(bob.email)
    not_hers = card(page, "bobs_box")
    expect(not_hers.get_by_role("button", name=re.compile(r"^(Delete|Share|Stop sharing)"))).to_have_count(0)
    expect(not_hers.get_by_role("button", name="Copy: pair spaces connect bobs_box")).to_be_visible()
    expect(page.get_by_text(alice.email, exact=True)).to_be_visible()  # who is signed in
    screenshot(page, "spaces.png")

    # Cancel: the dialog names the Space, and nothing changes.
    trash = page.get_by_role("button", name="Delete dynamic_stark")
    trash.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Delete the Space “dynamic_stark”?")
    screenshot(page, "spaces-confirm.png")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(card(page, "dynamic_stark")).to_be_visible()
    assert "dynamic_stark" in names(alice)

    # The keyboard: Enter on the focused trash icon opens the dialog on Cancel; Escape closes it
    # and gives the focus back.
    trash.focus()
    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(trash).to_be_focused()
    assert "dynamic_stark" in names(alice)

    # Delete: confirm, the row goes, a message says so, and the CLI agrees.
    trash.click()
    dialog.get_by_role("button", name="Delete Space").click()
    expect(dialog).to_be_hidden()
    expect(card(page, "dynamic_stark")).to_have_count(0)
    expect(page.get_by_role("status").filter(has_text="Deleted")).to_have_text('Deleted the Space "dynamic_stark".')
    expect(count(page)).to_have_text("You have 2 Container Spaces.")
    assert sorted(names(alice)) == ["bobs_box", "calm_turing"]
    assert names(bob) == ["bobs_box"]  # gone from the teammate's list too

    # A narrow screen: every Space is a card, nothing scrolls sideways.
    narrow = browser.new_context(
        base_url=live_broker.url, viewport={"width": 375, "height": 812}, storage_state=context.storage_state()
    )
    try:
        small = narrow.new_page()
        small.goto("/")
        expect(count(small)).to_have_text("You have 2 Container Spaces.")
        expect(small.get_by_role("button", name="Delete calm_turing")).to_be_visible()
        assert small.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        screenshot(small, "spaces-narrow.png")
    finally:
        narrow.close()


def test_counts_and_the_empty_state(page: Page, team: dict[str, Person], screenshot: Screenshot) -> None:
    alice = team["alice"]
    page.goto("/signin")
    screenshot(page, "signin.png")
    sign_in(page, alice)
    expect(count(page)).to_have_text("You have no Container Spaces yet.")
    expect(page.get_by_role("heading", name="Create your first Space")).to_be_visible()
    expect(page.get_by_text("pair spaces authorize", exact=True)).to_be_visible()
    expect(page.locator("#spaces")).to_be_hidden()
    screenshot(page, "spaces-empty.png")

    authorize(alice, "first")  # appears without a reload
    expect(card(page, "first")).to_be_visible()
    expect(count(page)).to_have_text("You have one Container Space.")
    expect(page.get_by_role("heading", name="Create a Space", exact=True)).to_be_visible()  # no longer "first"


def test_share_and_unshare_from_the_page(page: Page, team: dict[str, Person]) -> None:
    alice, bob, carol = team["alice"], team["bob"], team["carol"]
    authorize(alice, "demo")
    sign_in(page, alice)
    demo = card(page, "demo")
    expect(demo).to_contain_text("Nobody yet")

    # Nobody is chosen for you: Share without a choice asks for one, and shares with no one.
    demo.get_by_role("button", name="Share demo…").click()
    dialog = page.get_by_role("dialog", name="Share “demo”")
    for teammate in (bob, carol):
        expect(dialog.get_by_role("radio", name=teammate.email, exact=True)).to_have_count(1)
    expect(dialog.get_by_role("radio", checked=True)).to_have_count(0)
    dialog.get_by_role("button", name="Share", exact=True).click()
    expect(dialog.get_by_role("alert")).to_have_text("Choose a teammate first.")
    dialog.get_by_role("radio", name=bob.email).check()
    dialog.get_by_role("button", name=f"Share with {bob.email}").click()  # the button names who
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("status").filter(has_text="now shared")).to_have_text(
        f'"demo" is now shared with {bob.email}.'
    )
    expect(demo.get_by_role("button", name=f"Stop sharing demo with {bob.email}")).to_be_visible()
    assert [(s["name"], s["role"], s["owner"]) for s in bob.spaces()] == [("demo", "shared", alice.email)]
    assert carol.spaces() == []
    # bob is no longer offered; the others still are
    demo.get_by_role("button", name="Share demo…").click()
    expect(dialog.get_by_role("radio", name=bob.email, exact=True)).to_have_count(0)
    expect(dialog.get_by_role("radio", name=carol.email, exact=True)).to_have_count(1)
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert carol.spaces() == []

    demo.get_by_role("button", name=f"Stop sharing demo with {bob.email}").click()
    expect(page.get_by_role("status").filter(has_text="no longer")).to_have_text(
        f'"demo" is no longer shared with {bob.email}.'
    )
    expect(demo).to_contain_text("Nobody yet")
    assert bob.spaces() == []


def test_sign_in_through_a_one_time_link(browser: Browser, live_broker: RealBroker, team: dict[str, Person]) -> None:
    alice = team["alice"]
    authorize(alice, "demo")
    result = alice.pair("web", "--print")
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    assert re.fullmatch(re.escape(live_broker.url) + r"/web/link/pair_wl_[A-Za-z0-9_-]{40,}", url), url
    assert "Open this link within 5 minutes" in result.stderr

    first = browser.new_context()
    try:
        page = first.new_page()
        page.goto(url)
        expect(page).to_have_url(live_broker.url + "/")
        expect(count(page)).to_have_text("You have one Container Space.")
        expect(page.get_by_text(alice.email, exact=True)).to_be_visible()
    finally:
        first.close()

    second = browser.new_context()  # another browser, or the same link again: refused
    try:
        page = second.new_page()
        response = page.goto(url)
        assert response is not None and response.status == 400
        expect(page.get_by_role("heading")).to_have_text("This sign-in link has expired or was already used.")
        page.goto(live_broker.url + "/")
        expect(page).to_have_url(re.compile(r"/signin$"))
    finally:
        second.close()

    # Without a display, `pair web` prints the link instead of opening a browser.
    quiet = alice.pair("web", env={"DISPLAY": "", "WAYLAND_DISPLAY": "", "BROWSER": ""})
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.startswith(live_broker.url + "/web/link/pair_wl_")
    assert quiet.stdout.strip() != url


def test_a_teammate_sees_a_shared_space_but_cannot_delete_it(page: Page, team: dict[str, Person]) -> None:
    alice, bob = team["alice"], team["bob"]
    authorize(alice, "demo", bob.email)
    authorize(alice, "private")
    ids = {str(s["name"]): str(s["id"]) for s in alice.spaces()}

    sign_in(page, bob)
    expect(count(page)).to_have_text("You have one Container Space.")
    demo = card(page, "demo")
    expect(demo).to_contain_text(alice.email)
    expect(demo).to_contain_text("Shared with you")
    expect(demo.get_by_role("button", name=re.compile(r"^(Delete|Share|Stop sharing)"))).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("^Delete"))).to_have_count(0)
    expect(card(page, "private")).to_have_count(0)

    token = csrf(page)  # bob's own, valid token
    for space_id, status in ((ids["demo"], 403), (ids["private"], 404)):
        forged = page.request.post(
            f"/spaces/{space_id}/delete", headers={"X-CSRF-Token": token, "Accept": "application/json"}
        )
        assert forged.status == status, forged.text()
        as_form = page.request.post(f"/spaces/{space_id}/delete", form={"csrf_token": token})
        assert as_form.status == status
        share = page.request.post(f"/spaces/{space_id}/shares", form={"csrf_token": token, "add": "carol@example.com"})
        assert share.status == status
        assert page.request.get(f"/spaces/{space_id}/delete").status == status
    assert sorted(names(alice)) == ["demo", "private"]
    assert team["carol"].spaces() == []


def test_a_request_without_the_csrf_token_is_refused(page: Page, team: dict[str, Person]) -> None:
    alice, bob = team["alice"], team["bob"]
    authorize(alice, "demo")
    sign_in(page, alice)
    space_id = card(page, "demo").get_attribute("data-space-id")

    attempts: list[tuple[dict[str, str], dict[str, str | float | bool] | None]] = [
        ({}, None),
        ({"X-CSRF-Token": "not-the-token"}, None),
        ({}, {"csrf_token": ""}),
        ({}, {"csrf_token": csrf(page) + "x"}),
    ]
    for headers, form in attempts:
        response = page.request.post(f"/spaces/{space_id}/delete", headers=headers, form=form)
        assert response.status == 403, response.text()
        assert "security token" in response.text()
    refused = page.request.post(f"/spaces/{space_id}/shares", form={"add": bob.email})
    assert refused.status == 403
    assert page.request.post("/signout").status == 403

    assert names(alice) == ["demo"]
    assert bob.spaces() == []
    page.reload()
    expect(card(page, "demo")).to_be_visible()  # still signed in, still there


def test_sign_out(page: Page, browser: Browser, live_broker: RealBroker, team: dict[str, Person]) -> None:
    alice = team["alice"]
    sign_in(page, alice)
    cookies = page.context.cookies()
    session = next(c for c in cookies if c["name"] == "pair_session")
    assert session["httpOnly"] and session["sameSite"] == "Lax" and session["path"] == "/"
    assert not session["secure"]  # plain http here; https (or an https public URL) sets Secure

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/signin\?signed_out$"))
    expect(page.get_by_role("status").filter(has_text="signed out")).to_have_text("You have signed out.")
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/signin$"))

    # The session itself is revoked: the old cookie no longer signs anyone in.
    replay = browser.new_context(base_url=live_broker.url)
    try:
        replay.add_cookies([{"name": session["name"], "value": session["value"], "url": live_broker.url}])
        again = replay.new_page()
        again.goto("/")
        expect(again).to_have_url(re.compile(r"/signin$"))
    finally:
        replay.close()


def test_status_changes_appear_without_a_reload(page: Page, team: dict[str, Person], tmp_path: Path) -> None:
    alice = team["alice"]
    token = authorize(alice, "demo")
    authorize(alice, "other")
    sign_in(page, alice)
    page.evaluate("window.notReloaded = true")
    demo = card(page, "demo")
    expect(demo.locator(".status")).to_have_text("Created")
    expect(demo.locator(".status")).to_have_class(re.compile(r"\bstatus-created\b"))
    expect(demo.locator('[data-role="status-hint"]')).to_have_text(
        "Authorized; waiting for the container to bootstrap with its token."  # in words on the page, not a tooltip
    )

    # Polls that change nothing touch nothing: the count line is not rewritten (and re-announced).
    page.evaluate("""window.rewrites = 0;
        new MutationObserver(m => (window.rewrites += m.length))
            .observe(document.getElementById("space-count"), {childList: true, characterData: true, subtree: true});""")
    for _ in range(2):
        with page.expect_response(lambda r: r.url.endswith("/web/spaces.json")):
            pass
    assert page.evaluate("window.rewrites") == 0

    bootstrap(alice, token, tmp_path / "container")
    expect(demo.locator(".status")).to_have_text("Starting")
    expect(demo.locator(".status")).to_have_class(re.compile(r"\bstatus-starting\b"))
    expect(demo.locator('[data-role="status-hint"]')).to_have_text("The container is registered and SSH is starting.")
    expect(demo.locator('[data-role="platform"]')).to_have_text("Container")
    expect(page.locator("#announcer")).to_have_text("“demo” is now Starting.")  # said, not only shown

    demo.get_by_role("button", name="Share demo…").click()  # a dialog about it is open when it goes
    dialog = page.get_by_role("dialog", name="Share “demo”")
    expect(dialog).to_be_visible()
    alice.ok("spaces", "delete", "--space", "demo", "--yes")
    expect(demo).to_have_count(0)
    expect(dialog).to_be_hidden()
    expect(count(page)).to_have_text("You have one Container Space.")
    gone = page.get_by_role("status").filter(has_text="was deleted")
    expect(gone).to_have_text("The Space “demo” was deleted.")
    expect(gone).to_be_focused()  # focus went with the dialog to the message, not to <body>
    assert page.evaluate("window.notReloaded") is True


def test_delete_and_share_without_javascript(
    browser: Browser, live_broker: RealBroker, team: dict[str, Person]
) -> None:
    alice, bob = team["alice"], team["bob"]
    authorize(alice, "demo")
    authorize(alice, "keep")
    context = browser.new_context(base_url=live_broker.url, java_script_enabled=False)
    try:
        page = context.new_page()
        sign_in(page, alice)

        card(page, "demo").get_by_role("button", name="Share demo…").click()  # no script: a page to choose on
        expect(page.get_by_role("heading", level=1)).to_have_text("Share “demo”")
        page.get_by_role("radio", name=bob.email).check()
        page.get_by_role("button", name="Share", exact=True).click()
        expect(page.locator("#flash")).to_have_text(f'"demo" is now shared with {bob.email}.')
        assert [s["name"] for s in bob.spaces()] == ["demo"]

        page.get_by_role("button", name="Delete demo").click()  # no script: a confirmation page
        expect(page.get_by_role("heading", level=1)).to_have_text("Delete the Space “demo”?")
        page.get_by_role("link", name="Cancel").click()
        expect(card(page, "demo")).to_be_visible()
        assert sorted(names(alice)) == ["demo", "keep"]

        page.get_by_role("button", name="Delete demo").click()
        page.get_by_role("button", name="Delete Space").click()
        expect(page).to_have_url(live_broker.url + "/")
        expect(page.locator("#flash")).to_have_text('Deleted the Space "demo".')
        expect(card(page, "demo")).to_have_count(0)
        expect(count(page)).to_have_text("You have one Container Space.")
        assert names(alice) == ["keep"]
        assert bob.spaces() == []
        page.reload()
        expect(page.locator("#flash")).to_be_hidden()  # a flash is shown once
    finally:
        context.close()


def test_a_failing_sshd_shows_in_the_status_as_words_and_clears_when_it_serves(
    page: Page, live_broker: RealBroker, team: dict[str, Person], tmp_path: Path, screenshot: Screenshot
) -> None:
    alice = team["alice"]
    bootstrap(alice, authorize(alice, "demo"), tmp_path / "container")
    registration = Home(tmp_path / "container").registration()
    assert registration is not None
    agent = Client(live_broker.url, token=registration.credential)
    instance = Home(tmp_path / "container").instance_id()
    reason = "sshd could not start (supervisord gave up): <b>Address already in use</b> (port 2222)."
    sign_in(page, alice)
    page.evaluate("window.notReloaded = true")
    demo = card(page, "demo")
    status, hint = demo.locator('[data-role="status"]'), demo.locator('[data-role="status-hint"]')

    with agent:
        down = SshHealth(serving=False, reason=reason, supervisor_state="FATAL")
        agent.heartbeat(Heartbeat(instance_id=instance, ssh=down))
        expect(status).to_have_text("SSH down")  # in words, not only a colour
        expect(status).to_have_class(re.compile(r"\bstatus-ssh-down\b"))
        expect(hint).to_have_text(f"SSH is not being served: {reason}")  # the container's text, as text
        expect(hint.locator("b")).to_have_count(0)
        expect(page.locator("#announcer")).to_have_text("“demo” is now SSH down.")
        source = axe_source()
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            axe(page, source, f"a Space whose sshd is down ({scheme})")
        screenshot(page, "spaces-ssh-down.png")
        page.reload()
        expect(card(page, "demo").locator('[data-role="status-hint"]')).to_have_text(
            f"SSH is not being served: {reason}"
        )
        page.evaluate("window.notReloaded = true")

        agent.heartbeat(Heartbeat(instance_id=instance, ssh=SshHealth(serving=True, supervisor_state="RUNNING")))
        expect(status).to_have_text("Running")
        expect(status).to_have_class(re.compile(r"\bstatus-running\b"))
        expect(hint).to_have_text("The container is connected and SSH is up.")
    assert page.evaluate("window.notReloaded") is True
