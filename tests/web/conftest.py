"""The web page's fixtures: Debian's Chromium driven by Playwright (no `playwright install`), a
fresh browser context per test, people with a signed-in page, and screenshots.

`pytest tests/web --screenshots DIR` (or PAIR_TEST_SCREENSHOTS=DIR) also copies every screenshot
into DIR; they are always written to the test's own tmp dir.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.support.broker import RealBroker
from tests.support.people import Person
from tests.support.tools import need_tool

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
POLL_WAIT_MS = 10_000  # the page polls every 3 s; a change must show within a few polls

expect.set_options(timeout=POLL_WAIT_MS)

Screenshot = Callable[[Page, str], Path]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--screenshots",
        metavar="DIR",
        default=None,
        help="Also copy the web tests' screenshots into DIR (they are always in each test's tmp dir).",
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = need_tool("chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def context(browser: Browser, live_broker: RealBroker) -> Iterator[BrowserContext]:
    ctx = browser.new_context(base_url=live_broker.url, viewport={"width": 1280, "height": 800})
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture
def team(live_broker: RealBroker, tmp_path: Path) -> dict[str, Person]:
    return {name: Person(live_broker, name, tmp_path / "people", ssh_key=False) for name in ("alice", "bob", "carol")}


@pytest.fixture
def screenshot(request: pytest.FixtureRequest, tmp_path: Path) -> Screenshot:
    extra = request.config.getoption("screenshots", default=None) or os.environ.get("PAIR_TEST_SCREENSHOTS")

    def take(page: Page, name: str) -> Path:
        path = tmp_path / name
        page.screenshot(path=str(path), full_page=True)
        if extra:
            Path(extra).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, Path(extra) / name)
        print(f"screenshot: {path}")
        return path

    return take
