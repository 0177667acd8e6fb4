"""The Spaces page's shared ports: the owner shares a port, changes who can open it and stops
sharing it with the page's own forms; the people the Space is shared with see its link and
level; without an apps domain the card says port sharing is off and why."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.broker import RealBroker, real_broker
from tests.support.people import Person
from tests.web.pages import authorize, card, sign_in

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def apps_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealBroker]:
    with real_broker(tmp_path_factory.mktemp("ports") / "data", env={"PAIR_BROKER_APPS_DOMAIN": "*.localhost"}) as b:
        yield b


def test_the_owner_shares_changes_and_unshares_a_port(
    browser: Browser, apps_broker: RealBroker, tmp_path: Path
) -> None:
    alice, bob = (Person(apps_broker, n, tmp_path, ssh_key=False) for n in ("alice", "bob"))
    authorize(alice, "demo", bob.email)
    context = browser.new_context(base_url=apps_broker.url)
    try:
        page = context.new_page()
        sign_in(page, alice)
        demo = card(page, "demo")
        demo.get_by_label("Port", exact=True).fill("8080")
        demo.get_by_label("Who can open it").select_option("shared")
        demo.get_by_label("Label (optional)").fill("Docs <preview>")
        demo.get_by_role("button", name="Share port").click()
        port = f"http://8080--demo--alice.localhost:{apps_broker.url.rsplit(':', 1)[1]}/"
        expect(page.locator("#flash")).to_contain_text(f"Port 8080 is shared at {port}")
        link = card(page, "demo").get_by_role("link", name="Docs <preview>")
        expect(link).to_have_attribute("href", port)
        expect(card(page, "demo")).to_contain_text("port 8080 · People the Space is shared with")

        listing = json.loads(bob.ok("spaces", "ports", "list", "demo", "--json"))
        assert [(p["port"], p["level"], p["url"]) for p in listing["shared"]] == [(8080, "shared", port)]

        card(page, "demo").get_by_label("Who can open port 8080").select_option("owner")
        card(page, "demo").get_by_role("button", name="Change").click()
        expect(card(page, "demo")).to_contain_text("port 8080 · Only you")
        assert json.loads(bob.ok("spaces", "ports", "list", "demo", "--json"))["shared"] == []

        card(page, "demo").get_by_role("button", name="Stop sharing port 8080 of demo").click()
        expect(page.locator("#flash")).to_contain_text("Port 8080 is no longer shared.")
        expect(card(page, "demo")).to_contain_text("No port is shared.")
        assert json.loads(alice.ok("spaces", "ports", "list", "demo", "--json"))["shared"] == []
    finally:
        context.close()


def test_without_an_apps_domain_the_card_says_why(page_of_alice: tuple[Person, Page]) -> None:
    alice, page = page_of_alice
    expect(card(page, "demo").locator('[data-role="ports-off"]')).to_contain_text("Port sharing is off on this broker")
    failed = alice.pair("spaces", "ports", "share", "8080", "demo")
    assert failed.returncode == 1 and "error: Port sharing is off on this broker" in failed.stderr
    assert "hint: Ask its operator to give it one" in failed.stderr  # alice is no admin: no `pair-broker serve`


@pytest.fixture
def page_of_alice(browser: Browser, live_broker: RealBroker, team: dict[str, Person]) -> Iterator[tuple[Person, Page]]:
    alice = team["alice"]
    authorize(alice, "demo")
    context = browser.new_context(base_url=live_broker.url)
    try:
        page = context.new_page()
        sign_in(page, alice)
        yield alice, page
    finally:
        context.close()
