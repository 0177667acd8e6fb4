"""Login CSRF through `pair web`'s one-time link: a page on another site (or an app origin) that
sends a browser to someone's link must not sign that browser in to the link's account; the link
then asks first, with a same-origin button, and is not spent by the refused navigation."""

from __future__ import annotations

import re

from playwright.sync_api import Browser, expect

from tests.support.broker import RealBroker
from tests.support.people import Person


def test_a_link_another_site_sends_asks_first(
    browser: Browser, live_broker: RealBroker, team: dict[str, Person]
) -> None:
    mallory = team["carol"]  # the attacker, whose link it is
    result = mallory.pair("web", "--print")
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    other_site = live_broker.url.replace("127.0.0.1", "localhost")  # another site to the browser

    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(other_site + "/signin")
        with page.expect_navigation():
            page.evaluate("(link) => { location.href = link; }", url)  # Sec-Fetch-Site: cross-site
        expect(page.get_by_role("heading", name="Continue signing in?")).to_be_visible()
        assert not [c for c in context.cookies(live_broker.url) if c["name"] == "pair_session"]

        page.goto(live_broker.url + "/")  # not signed in as the link's owner
        expect(page).to_have_url(re.compile(r"/signin$"))

        page.goto(url)  # opened by the person (Sec-Fetch-Site: none): the link was not spent
        expect(page).to_have_url(live_broker.url + "/")
        expect(page.get_by_text(mallory.email, exact=True)).to_be_visible()
    finally:
        context.close()


def test_the_asking_page_signs_in_with_its_button(
    browser: Browser, live_broker: RealBroker, team: dict[str, Person]
) -> None:
    alice = team["alice"]
    url = alice.ok("web", "--print").strip()
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(live_broker.url.replace("127.0.0.1", "localhost") + "/signin")
        with page.expect_navigation():
            page.evaluate("(link) => { location.href = link; }", url)
        page.get_by_role("button", name="Continue signing in").click()
        expect(page).to_have_url(live_broker.url + "/")
        expect(page.get_by_text(alice.email, exact=True)).to_be_visible()
    finally:
        context.close()
