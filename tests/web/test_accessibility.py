"""Every page and state of the web page checked by axe-core (WCAG 2.0/2.1 A and AA) in light and
dark, at 1280 and 375 px, under the page's own Content-Security-Policy; plus the contrast of focus
rings and field borders, measured from the computed styles; and a screenshot of each.

One real broker and one browser serve the whole module: the states are built up in order.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Literal

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.support.broker import RealBroker, real_broker
from tests.support.people import Person
from tests.web import pages
from tests.web.conftest import Screenshot
from tests.web.pages import authorize, bootstrap, card, sign_in

pytestmark = pytest.mark.integration

LOOKS: list[tuple[Literal["light", "dark"], int]] = [("light", 1280), ("dark", 1280), ("light", 375), ("dark", 375)]
LONG = "maximiliana.von-hohenzollern-sigmaringen.platform-engineering"
HEIGHT = {1280: 800, 375: 812}
CSP_WATCH = """document.addEventListener("securitypolicyviolation",
    e => (window.cspViolations = (window.cspViolations || []).concat(e.violatedDirective + " " + e.blockedURI)));"""


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealBroker]:
    # with an apps domain, so the cards show shared ports and the owner's form to share one
    with real_broker(
        tmp_path_factory.mktemp("a11y") / "broker-data", env={"PAIR_BROKER_APPS_DOMAIN": "*.localhost"}
    ) as b:
        yield b


@pytest.fixture(scope="module")
def team(broker: RealBroker, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Person]:
    """alice owns a created Space shared with bob (port 8080 shared with him) and a starting one;
    bob shares his with her; carol has none; a teammate with a long email is offered for sharing."""
    root = tmp_path_factory.mktemp("people")
    people = {name: Person(broker, name, root, ssh_key=False) for name in ("alice", "bob", "carol", LONG)}
    alice, bob = people["alice"], people["bob"]
    authorize(alice, "dynamic_stark", bob.email)
    alice.ok("spaces", "ports", "share", "8080", "dynamic_stark", "--level", "shared", "--label", "Docs preview")
    bootstrap(alice, authorize(alice, "calm_turing"), root / "container", CODESPACES="true")
    authorize(bob, "bobs_box", alice.email)
    return people


@pytest.fixture(scope="module")
def source() -> str:
    return pages.axe_source()


@pytest.fixture
def signed_out(browser: Browser, broker: RealBroker) -> Iterator[Page]:
    context = browser.new_context(base_url=broker.url, accept_downloads=True)
    context.add_init_script(CSP_WATCH)
    try:
        yield context.new_page()
        for page in context.pages:
            assert page.evaluate("window.cspViolations || []") == [], "the page broke its own CSP"
    finally:
        context.close()


def signed_in_as(page: Page, person: Person) -> Page:
    sign_in(page, person)
    return page


def in_every_look(
    page: Page, state: str, source: str, screenshot: Screenshot, check: Callable[[], None] | None = None
) -> None:
    """axe (and `check`) on the page as it is, in each colour scheme and width; a screenshot of each."""
    for scheme, width in LOOKS:
        page.emulate_media(color_scheme=scheme)
        page.set_viewport_size({"width": width, "height": HEIGHT[width]})
        what = f"{state} ({scheme}, {width} px)"
        pages.axe(page, source, what)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), f"{what} scrolls sideways"
        if check:
            check()
        screenshot(page, f"{state}-{scheme}-{width}.png", full_page="dialog" not in state)
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 1280, "height": 800})


def test_axe_finds_what_it_should(signed_out: Page, source: str) -> None:
    """The vendored axe really runs here and reports a violation when there is one."""
    signed_out.goto("/signin")
    signed_out.evaluate("document.querySelector('label[for=email]').remove()")
    with pytest.raises(AssertionError, match='"id": "label"'):
        pages.axe(signed_out, source, "a sign-in form with a label removed")
    assert (pages.VENDOR / "LICENSE").read_text().startswith("Mozilla Public License")


def test_sign_in_and_its_error(signed_out: Page, team: dict[str, Person], source: str, screenshot: Screenshot) -> None:
    page = signed_out
    page.goto("/signin")
    expect(page.get_by_label("Email")).to_be_focused()
    in_every_look(page, "signin", source, screenshot)

    page.get_by_label("Email").fill(team["alice"].email)
    page.get_by_label("Auth key").fill("pair_ak_wrong")
    page.get_by_role("button", name="Sign in").click()
    error = page.get_by_role("alert")
    expect(error).to_have_text(
        "That email and auth key do not match an account on this broker. "
        "Check the key file your admin gave you; if it is lost, ask your admin for a new key."
    )
    key = page.get_by_label("Auth key")
    expect(key).to_be_focused()  # focus and the error are on the same field
    expect(key).to_have_attribute("aria-invalid", "true")
    expect(key).to_have_accessible_description(re.compile(r"^That email and auth key do not match"))
    expect(page.get_by_label("Email")).not_to_have_attribute("aria-describedby", re.compile("signin-error"))
    in_every_look(page, "signin-error", source, screenshot)


def test_the_spaces_page_and_its_dialogs(
    signed_out: Page, team: dict[str, Person], source: str, screenshot: Screenshot
) -> None:
    page = signed_in_as(signed_out, team["alice"])
    expect(card(page, "calm_turing").locator('[data-role="status"]')).to_have_text("Starting")
    expect(card(page, "bobs_box")).to_contain_text("Shared with you")
    expect(card(page, "dynamic_stark")).to_contain_text("Created")
    in_every_look(page, "spaces", source, screenshot)

    page.get_by_role("button", name="Delete dynamic_stark").click()
    expect(page.get_by_role("dialog", name="Delete the Space “dynamic_stark”?")).to_be_visible()
    in_every_look(page, "spaces-delete-dialog", source, screenshot)
    page.keyboard.press("Escape")

    page.get_by_role("button", name="Share calm_turing…").click()
    dialog = page.get_by_role("dialog", name="Share “calm_turing”")
    expect(dialog).to_be_visible()
    dialog.get_by_role("radio", name=team["carol"].email).check()
    long_email = dialog.locator("label", has_text=team[LONG].email)

    def emails_fit() -> None:  # at 375 px the old dropdown cut emails off; these wrap
        assert long_email.evaluate("el => el.scrollWidth <= el.clientWidth"), "an email is cut off"
        assert long_email.evaluate("el => el.getBoundingClientRect().right <= window.innerWidth")

    in_every_look(page, "spaces-share-dialog", source, screenshot, emails_fit)
    dialog.get_by_role("button", name="Cancel").click()


def test_the_empty_page(
    browser: Browser, broker: RealBroker, team: dict[str, Person], source: str, screenshot: Screenshot
) -> None:
    context = browser.new_context(base_url=broker.url)
    try:
        page = signed_in_as(context.new_page(), team["carol"])
        expect(page.get_by_role("heading", name="Create your first Space")).to_be_visible()
        expect(page.locator("#spaces")).to_be_hidden()
        in_every_look(page, "spaces-empty", source, screenshot)
    finally:
        context.close()


def test_the_create_flow(signed_out: Page, team: dict[str, Person], source: str, screenshot: Screenshot) -> None:
    page = signed_in_as(signed_out, team["alice"])
    page.get_by_role("link", name="New Space").click()
    expect(page.get_by_role("heading", name="Create a Space", level=1)).to_be_visible()
    in_every_look(page, "create", source, screenshot)

    page.get_by_label("Name").fill("Not A Name!")
    page.get_by_role("button", name="Create Space").click()
    expect(page.get_by_role("alert")).to_contain_text("is not a valid Space name")
    expect(page.get_by_label("Name")).to_be_focused()
    in_every_look(page, "create-error", source, screenshot)

    page.get_by_label("Name").fill("a11y_check")
    page.get_by_role("button", name="Create Space").click()
    expect(page.get_by_role("heading", name="You're ready to bootstrap your Space “a11y_check”.")).to_be_focused()
    in_every_look(page, "create-done", source, screenshot)


def test_pages_without_the_script(
    signed_out: Page, team: dict[str, Person], source: str, screenshot: Screenshot
) -> None:
    """The confirmation pages a browser without JavaScript gets, and an error page."""
    page = signed_in_as(signed_out, team["alice"])
    space_id = card(page, "dynamic_stark").get_attribute("data-space-id")
    for path, state in (
        (f"/spaces/{space_id}/delete", "nojs-delete"),
        (f"/spaces/{space_id}/share", "nojs-share"),
        ("/spaces/sp_nonexistent/delete", "error-page"),
    ):
        page.goto(path)
        expect(page.get_by_role("heading", level=1)).to_be_visible()
        in_every_look(page, state, source, screenshot)


def tab_through(page: Page, limit: int = 80) -> list[pages.Ring]:
    """From the first stop (the skip link), press Tab until focus leaves the page; the ring of every stop."""
    page.locator(".skip-link").focus()
    rings = [pages.focus_ring(page)]
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement === document.body"):
            break
        rings.append(pages.focus_ring(page))
    return rings


@pytest.mark.parametrize("where", ["signin", "spaces", "create"])
def test_focus_rings_and_field_borders_contrast(
    browser: Browser, broker: RealBroker, team: dict[str, Person], where: str
) -> None:
    context: BrowserContext = browser.new_context(base_url=broker.url)
    try:
        page = context.new_page()
        if where != "signin":
            sign_in(page, team["alice"])
        page.goto({"signin": "/signin", "spaces": "/", "create": "/spaces/new"}[where])
        for scheme, width in LOOKS:
            page.emulate_media(color_scheme=scheme)
            page.set_viewport_size({"width": width, "height": HEIGHT[width]})
            rings = tab_through(page)
            assert len(rings) >= 3, rings
            weak = [r for r in rings if not r.visible or r.width < 2 or r.ratio < 3]
            assert weak == [], f"{where} ({scheme}, {width} px): focus rings under 3:1 or missing: {weak}"
            borders = pages.field_borders(page)
            assert where == "spaces" or borders, "no fields measured"
            faint = [(name, round(r, 2)) for name, r in borders if r < 3]
            assert faint == [], f"{where} ({scheme}, {width} px): field borders under 3:1: {faint}"
    finally:
        context.close()
