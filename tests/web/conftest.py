"""The web page's fixtures: Debian's Chromium driven by Playwright (no `playwright install`), one
browser and one real broker per test module, a fresh browser context and fresh people per test
(alice2, bob2… so tests on one broker never see each other's Spaces), and screenshots.

`pytest tests/web --screenshots DIR` (or PAIR_TEST_SCREENSHOTS=DIR) also copies every screenshot
into DIR; they are always written to the test's own tmp dir.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.support.broker import RealBroker, real_broker
from tests.support.chromium import chromium
from tests.support.people import Person

POLL_WAIT_MS = 10_000  # the page polls every 3 s; a change must show within a few polls

expect.set_options(timeout=POLL_WAIT_MS)


class Screenshot(Protocol):
    def __call__(self, page: Page, name: str, *, full_page: bool = True) -> Path: ...


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--screenshots",
        metavar="DIR",
        default=None,
        help="Also copy the web tests' screenshots into DIR (they are always in each test's tmp dir).",
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def live_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealBroker]:
    """One real broker for the module (tests that stop it start their own)."""
    with real_broker(tmp_path_factory.mktemp("broker") / "data") as b:
        yield b


TEAM_NUMBERS = itertools.count(1)


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
    """alice, bob and carol, new on the module's broker (as alice7@example.com…)."""
    n = next(TEAM_NUMBERS)
    return {
        name: Person(live_broker, f"{name}{n}", tmp_path / "people", ssh_key=False)
        for name in ("alice", "bob", "carol")
    }


@pytest.fixture
def screenshot(request: pytest.FixtureRequest, tmp_path: Path) -> Screenshot:
    extra = request.config.getoption("screenshots", default=None) or os.environ.get("PAIR_TEST_SCREENSHOTS")

    def take(page: Page, name: str, *, full_page: bool = True) -> Path:
        """The whole page, or only the viewport (a modal dialog's backdrop covers only that)."""
        path = tmp_path / name
        page.screenshot(path=str(path), full_page=full_page)
        if extra:
            Path(extra).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, Path(extra) / name)
        print(f"screenshot: {path}")
        return path

    return take
