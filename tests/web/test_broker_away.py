"""The broker goes away under an open page: the page says so within 5 s, actions say what did not
happen, no browser error text appears, and when the broker comes back (same port, same data) the
page says so and works again."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, expect

from tests.support.broker import real_broker
from tests.support.people import Person
from tests.support.processes import stop
from tests.web import pages
from tests.web.conftest import Screenshot
from tests.web.pages import authorize, card, names, no_raw_errors, sign_in

pytestmark = pytest.mark.integration

LOST = "The page cannot reach the broker"
UNREACHABLE = "the broker could not be reached."


def test_the_page_says_when_the_broker_is_away_and_when_it_is_back(
    browser: Browser, tmp_path: Path, screenshot: Screenshot
) -> None:
    data = tmp_path / "broker-data"
    with real_broker(data) as first:
        alice, bob = (Person(first, name, tmp_path / "people", ssh_key=False) for name in ("alice", "bob"))
        authorize(alice, "demo", bob.email)
        authorize(alice, "other")
        context = browser.new_context(base_url=first.url)
        context.grant_permissions(["clipboard-read", "clipboard-write"])
        page = context.new_page()
        sign_in(page, alice)
        banner = page.locator("#connection-text")
        expect(banner).to_have_text("")

        stop(first.proc)
        stopped = time.monotonic()
        expect(banner).to_contain_text(LOST, timeout=5000)
        assert time.monotonic() - stopped < 5
        expect(banner).to_contain_text("What it shows may be out of date; it keeps trying.")
        expect(page.get_by_text("Next try in")).to_be_visible()
        pages.axe(page, pages.axe_source(), "the page without its broker")
        screenshot(page, "broker-away.png")

        # Actions fail in words that say what did not happen.
        page.get_by_role("button", name="Delete demo").click()
        dialog = page.get_by_role("dialog", name="Delete the Space “demo”?")
        dialog.get_by_role("button", name="Delete Space").click()
        expect(dialog.get_by_role("alert")).to_have_text(f"The Space was not deleted: {UNREACHABLE}")
        screenshot(page, "broker-away-delete.png")
        dialog.get_by_role("button", name="Cancel").click()

        card(page, "other").get_by_role("button", name="Share other…").click()
        share = page.get_by_role("dialog", name="Share “other”")
        share.get_by_role("radio", name=bob.email).check()
        share.get_by_role("button", name=f"Share with {bob.email}").click()
        expect(share.get_by_role("alert")).to_have_text(f"“other” was not shared with {bob.email}: {UNREACHABLE}")
        share.get_by_role("button", name="Cancel").click()

        card(page, "demo").get_by_role("button", name=f"Stop sharing demo with {bob.email}").click()
        expect(page.locator("#flash")).to_have_text(f"“demo” is still shared with {bob.email}: {UNREACHABLE}")
        expect(page.locator("#flash")).to_be_focused()

        # Copying needs no broker.
        card(page, "demo").get_by_role("button", name="Copy: pair spaces connect demo").click()
        expect(page.locator("#announcer")).to_have_text("Copied.")
        no_raw_errors(page)

        try_now = page.get_by_role("button", name="Try now")
        try_now.click()  # asks at once; still away
        expect(page.get_by_text("Next try in")).to_be_visible()
        try_now.focus()  # where focus is when the broker comes back
        port = urlsplit(first.url).port
        assert port

    with real_broker(data, port=port) as again:  # the same port and data directory
        assert again.url == first.url
        expect(banner).to_have_text("The broker is back; the page is up to date again.", timeout=20_000)
        expect(page.get_by_text("Next try in")).to_be_hidden()
        expect(page.get_by_role("heading", name="Container Spaces")).to_be_focused()  # not lost with the button
        page.get_by_role("button", name="Delete demo").click()
        dialog.get_by_role("button", name="Delete Space").click()
        expect(page.locator("#flash")).to_have_text('Deleted the Space "demo".')
        assert names(alice) == ["other"]
        assert bob.spaces() == []  # still shared until it was deleted, and gone with it
        no_raw_errors(page)
        screenshot(page, "broker-back.png")
        context.close()
