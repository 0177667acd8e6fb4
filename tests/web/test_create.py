"""Creating a Space in the browser, against a real broker: the token is handed out once (copy, or
SPACE_ID.txt), works for a real `pair spaces bootstrap`, and the broker records exactly what
`pair spaces authorize` records."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.broker import RealBroker
from tests.support.people import Person
from tests.web.conftest import Screenshot
from tests.web.pages import card, no_raw_errors, sign_in

pytestmark = pytest.mark.integration

TOKEN = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")


def audit(broker: RealBroker, space_id: str) -> list[tuple[str, str, str]]:
    result = broker.admin("audit", "--target", space_id, "--json")
    assert result.returncode == 0, result.stderr
    return [(row["actor"], row["action"], row["detail"]) for row in json.loads(result.stdout)]


def test_create_a_space_in_the_browser(
    browser: Browser, live_broker: RealBroker, team: dict[str, Person], tmp_path: Path, screenshot: Screenshot
) -> None:
    alice, bob, carol = team["alice"], team["bob"], team["carol"]
    context = browser.new_context(base_url=live_broker.url, accept_downloads=True)
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    try:
        page = context.new_page()
        sign_in(page, alice)
        page.get_by_role("link", name="New Space").click()
        expect(page.get_by_label("Name")).to_be_focused()
        page.get_by_label("Name").fill("from_the_web")
        page.get_by_role("checkbox", name=bob.email, exact=True).check()
        with page.expect_response(lambda r: r.url.endswith("/spaces/new") and r.request.method == "POST") as posted:
            page.get_by_role("button", name="Create Space").click()
        assert posted.value.status == 200
        assert posted.value.headers["cache-control"] == "no-store"  # the token is never cached
        heading = page.get_by_role("heading", name="You're ready to bootstrap your Space “from_the_web”.")
        expect(heading).to_be_focused()
        words = page.locator("#token-words")
        expect(words).to_contain_text("Your Space's token is valid for 1 hour.")
        token = page.locator("#space-token").inner_text().strip()
        assert TOKEN.match(token), token
        screenshot(page, "created.png")

        page.get_by_role("button", name="Copy token").click()
        expect(page.locator("#announcer")).to_have_text("Copied.")
        assert page.evaluate("navigator.clipboard.readText()") == token
        with page.expect_download() as download:
            page.get_by_role("link", name="Download SPACE_ID.txt").click()
        assert download.value.suggested_filename == "SPACE_ID.txt"
        assert Path(download.value.path()).read_text() == token + "\n"  # as `pair spaces authorize` writes it

        # Handed out once: a reload shows a fresh form and no token.
        page.reload()
        expect(page.get_by_label("Name")).to_have_value("")
        assert token not in page.content()
        no_raw_errors(page)

        # The token is a real one: a container bootstraps with it, and bob is in.
        home = tmp_path / "container"
        home.mkdir()
        alice.ok("spaces", "bootstrap", token, env={"PAIR_HOME": str(home)})
        assert [(s["name"], s["state"]) for s in alice.spaces()] == [("from_the_web", "starting")]
        assert [(s["name"], s["owner"]) for s in bob.spaces()] == [("from_the_web", alice.email)]
        assert carol.spaces() == []

        # The same rules as the CLI: a name taken is refused, tied to the Name field.
        page.get_by_label("Name").fill("from_the_web")
        page.get_by_role("button", name="Create Space").click()
        alert = page.get_by_role("alert")
        expect(alert).to_have_text(
            'You already have a Space named "from_the_web". Pick another name, or leave it empty for a generated one.'
        )
        expect(page.get_by_label("Name")).to_be_focused()
        expect(page.get_by_label("Name")).to_have_attribute("aria-invalid", "true")
    finally:
        context.close()

    # The same audit rows as `pair spaces authorize --name … --user …` writes.
    printed = alice.ok("spaces", "authorize", "--name", "from_the_cli", "--user", bob.email)
    assert "Your Space's token is valid for 1 hour" in printed  # the page's words are the CLI's
    ids = {str(s["name"]): str(s["id"]) for s in alice.spaces()}
    web, cli = audit(live_broker, ids["from_the_web"]), audit(live_broker, ids["from_the_cli"])
    assert [(a, action) for a, action, _ in web][:3] == [(a, action) for a, action, _ in cli]
    assert [(a, action) for a, action, _ in cli] == [
        (alice.email, "space.create"),
        (alice.email, "space.share"),
        (alice.email, "space.token"),
    ]
    assert web[1][2] == cli[1][2] == bob.email


def test_create_without_javascript(browser: Browser, live_broker: RealBroker, team: dict[str, Person]) -> None:
    alice = team["alice"]
    context = browser.new_context(base_url=live_broker.url, java_script_enabled=False, accept_downloads=True)
    try:
        page: Page = context.new_page()
        sign_in(page, alice)
        page.get_by_role("link", name="New Space").click()
        page.get_by_role("button", name="Create Space").click()  # no name: one is generated
        expect(page.get_by_role("heading", name=re.compile("^You're ready to bootstrap your Space"))).to_be_visible()
        token = page.locator("#space-token").inner_text().strip()
        with page.expect_download() as download:
            page.get_by_role("link", name="Download SPACE_ID.txt").click()
        assert Path(download.value.path()).read_text() == token + "\n"
        [space] = alice.spaces()
        page.get_by_role("link", name="Back to your Spaces").click()
        expect(card(page, str(space["name"]))).to_be_visible()
    finally:
        context.close()
