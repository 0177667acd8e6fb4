"""Who is here, live: a real Space (supervisord, sshd and `pair agent` in a mount namespace) and a
real `pair spaces connect` session through the broker's relay. The owner sees who is connected,
since when and from where; a teammate sees who and since when, not the address."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.broker import RealBroker, real_broker
from tests.support.container import container
from tests.support.people import Person
from tests.web import pages
from tests.web.conftest import Screenshot
from tests.web.pages import card, sign_in

pytestmark = pytest.mark.integration

BROKER_ENV = {"PAIR_BROKER_AGENT_INTERVAL": "2"}  # quick to show Running, slow to call it silent under load


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RealBroker]:
    with real_broker(tmp_path / "broker", env=BROKER_ENV) as b:
        yield b


@contextmanager
def session(person: Person) -> Iterator[None]:
    """An SSH session through the relay that ends cleanly when we close its stdin (the remote
    `cat` ends, the shell exits, ssh and its proxy with it)."""
    with subprocess.Popen(
        person.connect("echo in-session; cat > /dev/null"),
        cwd=person.dir,
        env=person.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            assert proc.stdout.readline() == "in-session\n"
            yield
        finally:
            proc.stdin.close()
            assert proc.wait(timeout=20) == 0


def here(page: Page) -> str:
    return card(page, "demo").locator('[data-role="here"]').inner_text()


def test_who_is_here(browser: Browser, broker: RealBroker, tmp_path: Path, screenshot: Screenshot) -> None:
    alice, bob = (Person(broker, name, tmp_path) for name in ("alice", "bob"))
    alice.ok("spaces", "authorize", "--user", bob.email, "--name", "demo")
    token = (alice.dir / "SPACE_ID.txt").read_text().strip()
    with container(tmp_path / "space") as box:
        booted = alice.pair("spaces", "bootstrap", token, env=box.env())
        assert booted.returncode == 0, booted.stderr
        owner_ctx, teammate_ctx = browser.new_context(base_url=broker.url), browser.new_context(base_url=broker.url)
        try:
            owner, teammate = owner_ctx.new_page(), teammate_ctx.new_page()
            sign_in(owner, alice)
            sign_in(teammate, bob)
            for page in (owner, teammate):
                expect(card(page, "demo").locator('[data-role="status"]')).to_have_text("Running")
                expect(card(page, "demo").locator('[data-role="here"]')).to_have_text("Nobody is connected.")

            with session(bob):  # bob is in, through the relay
                for page in (owner, teammate):
                    expect(card(page, "demo").locator('[data-role="here"] li')).to_contain_text(bob.email)
                expect(card(owner, "demo").locator('[data-role="here"]')).to_contain_text("from 127.0.0.1")
                assert "connected just now" in here(teammate)
                assert "127.0.0.1" not in here(teammate)  # only the owner sees where from
                pages.axe(owner, pages.axe_source(), "a running Space with someone in it")
                screenshot(owner, "who-is-here-owner.png")
                screenshot(teammate, "who-is-here-teammate.png")

            for page in (owner, teammate):  # gone when the session ends, without a reload
                expect(card(page, "demo").locator('[data-role="here"]')).to_have_text("Nobody is connected.")
        finally:
            owner_ctx.close()
            teammate_ctx.close()
