"""What the browser tests do on the page, in one place: sign in, find a Space's card, make Spaces
with the real CLI, run axe-core, and measure the contrast of focus rings and field borders."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from playwright.sync_api import Locator, Page, expect

from tests.support.people import Person

VENDOR = Path(__file__).resolve().parent / "vendor" / "axe-core"
AXE = VENDOR / "axe.min.js"
AXE_VERSION = "4.14.1"
AXE_SHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"  # of axe.min.js in the npm tarball
WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
CONTRAST_JS = (Path(__file__).resolve().parent / "contrast.js").read_text()
# What a browser says when fetch fails; none of it may ever reach the page.
RAW_ERRORS = re.compile(r"Failed to fetch|NetworkError|Load failed|TypeError|AbortError|signal is aborted")


def authorize(person: Person, name: str, *share_with: str) -> str:
    """A Space via the CLI; returns its token (from SPACE_ID.txt)."""
    users = [a for email in share_with for a in ("--user", email)] or ["--no-share"]
    person.ok("spaces", "authorize", "--name", name, *users)
    return (person.dir / "SPACE_ID.txt").read_text().strip()


def bootstrap(person: Person, token: str, home: Path, **env: str) -> None:
    """Register a container for the Space, as `pair spaces bootstrap` in it would."""
    home.mkdir(parents=True)
    person.ok("spaces", "bootstrap", token, env={"PAIR_HOME": str(home), **env})


def names(person: Person) -> list[str]:
    return [str(s["name"]) for s in person.spaces()]


class Account(Protocol):
    """Whoever signs in: a Person, or the broker's first admin."""

    @property
    def email(self) -> str: ...
    @property
    def key_file(self) -> Path: ...


def sign_in(page: Page, person: Account) -> None:
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/signin$"))  # signed out: the root sends you to sign in
    page.get_by_label("Email").fill(person.email)
    page.get_by_label("Auth key").fill(person.key_file.read_text().strip())
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Container Spaces")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/$"))


def card(page: Page, name: str) -> Locator:
    """A Space's card: an <article> labelled by its name."""
    return page.locator(f'article[data-space-name="{name}"]')


def count(page: Page) -> Locator:
    return page.locator("#space-count")


def csrf(page: Page) -> str:
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert token
    return token


def no_raw_errors(page: Page) -> None:
    """No browser error text anywhere on the page, visible or not (live regions included)."""
    text = page.evaluate("document.body.textContent")
    assert not RAW_ERRORS.search(text), text


# -- axe-core -------------------------------------------------------------------------------


def axe_source() -> str:
    source = AXE.read_text()
    assert hashlib.sha256(source.encode()).hexdigest() == AXE_SHA256, "tests/web/vendor/axe-core changed"
    assert source.startswith(f"/*! axe v{AXE_VERSION}\n")
    return source


def axe(page: Page, source: str, what: str) -> None:
    """Run axe-core (WCAG 2.0/2.1 A and AA rules) on the page as it is now; fail with every
    violation. The script goes in through DevTools' Runtime.evaluate, which the page's
    Content-Security-Policy does not govern, so the CSP stays exactly as users get it."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(source)
    violations: list[dict[str, Any]] = page.evaluate(
        """tags => axe.run(document, {runOnly: {type: "tag", values: tags}, resultTypes: ["violations"]})
            .then(r => r.violations.map(v => ({id: v.id, help: v.help,
                nodes: v.nodes.map(n => ({target: n.target.join(" "), summary: n.failureSummary}))})))""",
        WCAG_21_AA,
    )
    assert violations == [], f"axe on {what}:\n{json.dumps(violations, indent=2)}"


# -- contrast of what axe does not check ----------------------------------------------------


@dataclass(frozen=True)
class Ring:
    element: str
    ratio: float
    width: float
    visible: bool


def focus_ring(page: Page) -> Ring:
    """The focused element's outline: its contrast against what it is drawn on (3:1 wanted,
    WCAG 1.4.11), its width, and whether it is drawn at all."""
    data: dict[str, Any] = page.evaluate(f"(() => {{ {CONTRAST_JS}\n return focusRing(); }})()")
    return Ring(data["element"], data["ratio"], data["width"], data["visible"])


def field_borders(page: Page) -> list[tuple[str, float]]:
    """Every visible text field's border contrast against the surface around it (3:1 wanted)."""
    data: list[list[Any]] = page.evaluate(f"(() => {{ {CONTRAST_JS}\n return fieldBorders(); }})()")
    return [(str(name), float(ratio)) for name, ratio in data]
