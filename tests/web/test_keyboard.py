"""The Spaces page by keyboard alone: sign in, copy the connect command, share with a chosen
teammate (through a confirmation), open, cancel and confirm a delete. At every stop focus is on
an element of the page (never <body>) and its ring is drawn with 3:1 contrast, also when a live
refresh redraws the card that holds it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from tests.support.broker import RealBroker
from tests.support.people import Person
from tests.web import pages
from tests.web.pages import authorize, card, names

pytestmark = pytest.mark.integration


@pytest.fixture
def keyboard_context(browser: Browser, live_broker: RealBroker) -> Iterator[BrowserContext]:
    context = browser.new_context(base_url=live_broker.url, viewport={"width": 1280, "height": 800})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    try:
        yield context
    finally:
        context.close()


def focus_is_visible(page: Page) -> None:
    assert page.evaluate("document.activeElement !== document.body && document.activeElement !== null"), "focus lost"
    ring = pages.focus_ring(page)
    assert ring.visible and ring.width >= 2 and ring.ratio >= 3, ring


def tab_to(page: Page, target: Locator, *, limit: int = 60) -> None:
    """Press Tab, or Shift+Tab when `target` comes earlier in the page, until `target` has focus;
    every stop on the way must show its ring."""
    backwards = target.evaluate(
        "el => !!(document.activeElement.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_PRECEDING)"
    )
    for _ in range(limit):
        if target.evaluate("el => el === document.activeElement"):
            focus_is_visible(page)
            return
        page.keyboard.press("Shift+Tab" if backwards else "Tab")
        focus_is_visible(page)
    raise AssertionError(f"Tab never reached {target}")


def redrawn(page: Page, name: str, before: str | None) -> None:
    """Wait until the live refresh has redrawn the card (its version changed)."""
    expect(card(page, name)).not_to_have_attribute("data-version", before or "")


def test_everything_by_keyboard(keyboard_context: BrowserContext, team: dict[str, Person]) -> None:
    alice, bob, carol = team["alice"], team["bob"], team["carol"]
    authorize(alice, "demo")
    authorize(alice, "other")
    page = keyboard_context.new_page()

    # Sign in: the email field has focus; type, Tab, type, Enter.
    page.goto("/signin")
    expect(page.get_by_label("Email")).to_be_focused()
    page.keyboard.type(alice.email)
    page.keyboard.press("Tab")
    page.keyboard.type(alice.key_file.read_text().strip())
    page.keyboard.press("Enter")
    expect(card(page, "demo")).to_be_visible()

    # Copy the connect command: the clipboard holds it, and "Copied" is announced.
    copy = card(page, "demo").get_by_role("button", name="Copy: pair spaces connect demo")
    tab_to(page, copy)
    page.keyboard.press("Enter")
    expect(page.locator("#announcer")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == "pair spaces connect demo"
    focus_is_visible(page)

    # A live refresh redraws the card (it is shared elsewhere): focus moves to the same button.
    version = card(page, "demo").get_attribute("data-version")
    alice.ok("spaces", "share", "--space", "demo", carol.email)
    redrawn(page, "demo", version)
    expect(card(page, "demo").get_by_role("button", name=f"Stop sharing demo with {carol.email}")).to_be_visible()
    expect(card(page, "demo").get_by_role("button", name="Copy: pair spaces connect demo")).to_be_focused()
    focus_is_visible(page)

    # Share "other" with a chosen teammate: nothing is chosen for you, the button says who.
    share = card(page, "other").get_by_role("button", name="Share other…")
    tab_to(page, share)
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Share “other”")
    expect(dialog).to_be_visible()
    focus_is_visible(page)
    expect(dialog.get_by_role("radio", checked=True)).to_have_count(0)
    confirm = dialog.get_by_role("button", name="Share", exact=True)
    tab_to(page, confirm)
    page.keyboard.press("Enter")  # no choice yet: asked for one, focus back on the choices
    expect(dialog.get_by_role("alert")).to_have_text("Choose a teammate first.")
    focus_is_visible(page)
    assert bob.spaces() == []
    for _ in range(40):  # arrow keys move through the teammates, checking each
        if dialog.get_by_role("radio", name=bob.email, exact=True).is_checked():
            break
        page.keyboard.press("ArrowDown")
        focus_is_visible(page)
    tab_to(page, dialog.get_by_role("button", name=f"Share with {bob.email}"))
    page.keyboard.press("Enter")
    expect(dialog).to_be_hidden()
    expect(page.locator("#flash")).to_have_text(f'"other" is now shared with {bob.email}.')
    expect(card(page, "other").get_by_role("button", name="Share other…")).to_be_focused()
    focus_is_visible(page)
    assert [s["name"] for s in bob.spaces()] == ["other"]

    # Delete: open, cancel by button; open, Escape after a live redraw of the card; confirm.
    trash = card(page, "demo").get_by_role("button", name="Delete demo")
    tab_to(page, trash)
    page.keyboard.press("Enter")
    delete = page.get_by_role("dialog", name="Delete the Space “demo”?")
    expect(delete.get_by_role("button", name="Cancel")).to_be_focused()
    focus_is_visible(page)
    page.keyboard.press("Enter")
    expect(delete).to_be_hidden()
    expect(trash).to_be_focused()
    focus_is_visible(page)

    page.keyboard.press("Enter")
    expect(delete).to_be_visible()
    version = card(page, "demo").get_attribute("data-version")
    alice.ok("spaces", "unshare", "--space", "demo", carol.email)  # the card behind the dialog is redrawn
    redrawn(page, "demo", version)
    page.keyboard.press("Escape")
    expect(delete).to_be_hidden()
    expect(card(page, "demo").get_by_role("button", name="Delete demo")).to_be_focused()
    focus_is_visible(page)
    assert sorted(names(alice)) == ["demo", "other"]

    page.keyboard.press("Enter")
    tab_to(page, delete.get_by_role("button", name="Delete Space"))
    page.keyboard.press("Enter")
    expect(delete).to_be_hidden()
    expect(card(page, "demo")).to_have_count(0)
    flash = page.locator("#flash")
    expect(flash).to_have_text('Deleted the Space "demo".')
    expect(flash).to_be_focused()
    focus_is_visible(page)  # the message that has focus shows its ring
    assert names(alice) == ["other"]
