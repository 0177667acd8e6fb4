"""Shared ports attacked from the browser (issue 12's security review): another app origin,
same-site with the app, must not use a visitor's access to it; a cookie tossed by an app origin
must not switch the broker's account; the app credential ends with the broker session.

Same world as test_shared_ports: the broker at `http://pair.test:PORT`, apps under
`*.apps.pair.test`, a real Space container running the demo app, Debian's Chromium.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from tests.container.test_shared_ports import (  # noqa: F401  (fixtures)
    APPS,
    SITE,
    WS_ECHO,
    PortsWorld,
    browser,
    demo_page,
    ports_world,
    sign_in_through_broker,
)
from tests.support.broker import real_broker
from tests.support.container import free_port
from tests.support.people import Person
from tests.support.processes import Output, executable

pytestmark = pytest.mark.integration

# From a page of another origin: a WebSocket to the app (resolves with the echo or how it failed)
# and a credentialed no-cors POST (its real status is seen through Playwright's network events).
WS_FROM = """(app) => new Promise((resolve) => {
  const ws = new WebSocket(app.replace(/^http/, "ws") + "echo-socket");
  ws.onopen = () => ws.send("sent by another app's page");
  ws.onmessage = (e) => resolve("echo: " + e.data);
  ws.onerror = () => resolve("refused");
})"""
POST_FROM = """async (app) => { await fetch(app + "upload", {method: "POST", mode: "no-cors", credentials: "include",
                                                          body: "x".repeat(10)}); return "sent"; }"""


@pytest.fixture
def contexts(browser: Browser) -> Iterator[list[BrowserContext]]:  # noqa: F811
    made: list[BrowserContext] = []
    yield made
    for context in made:
        context.close()


def fresh(browser: Browser, contexts: list[BrowserContext]) -> Page:  # noqa: F811
    contexts.append(browser.new_context(bypass_csp=True))  # the sibling stands for an app serving any script
    return contexts[-1].new_page()


def test_another_app_origin_cannot_use_a_visitors_access(
    ports_world: PortsWorld,  # noqa: F811
    browser: Browser,  # noqa: F811
    contexts: list[BrowserContext],
) -> None:
    w = ports_world
    w.share("--level", "shared")
    app_url = w.app_url
    sibling = app_url.replace(f"{w.app.port}--demo--alice", "9999--demo--alice")  # any other app, e.g. public
    bob = fresh(browser, contexts)
    sign_in_through_broker(bob, w.bob, app_url)
    assert demo_page(bob, app_url), bob.url
    assert bob.evaluate(WS_ECHO) == "hello"  # the app's own page keeps its WebSocket

    bob.goto(sibling)
    assert bob.url.startswith(sibling)
    assert bob.evaluate(WS_FROM, app_url) == "refused"
    with bob.expect_response(app_url + "upload") as posted:
        assert bob.evaluate(POST_FROM, app_url) == "sent"
    assert posted.value.status == 403

    # a top-level navigation from the sibling (following a link) still opens the app
    bob.evaluate("(app) => { location.href = app; }", app_url)
    bob.wait_for_url(app_url)
    assert demo_page(bob, app_url)

    # public: a public app is public, to any page
    w.share("--level", "public")
    bob.goto(sibling)
    assert bob.evaluate(WS_FROM, app_url) == "echo: sent by another app's page"


def sign_in_on_broker(page: Page, person: Person, broker_url: str) -> None:
    page.goto(broker_url + "/signin")
    page.fill("#email", person.email)
    page.fill("#auth_key", person.key_file.read_text().strip())
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert person.email in page.inner_text("body")


def test_a_cookie_tossed_by_an_app_origin_does_not_switch_accounts(
    browser: Browser,  # noqa: F811
    contexts: list[BrowserContext],
    tmp_path: Path,
) -> None:
    port = free_port()
    public_url = f"http://{SITE}:{port}"  # http: no __Host- prefix, the case left to the broker
    env = {"PAIR_BROKER_APPS_DOMAIN": APPS}
    with real_broker(tmp_path / "broker", "--public-url", public_url, env=env, port=port) as broker:
        attacker, victim = (Person(broker, n, tmp_path, ssh_key=False) for n in ("mallory", "victor"))
        mallory = fresh(browser, contexts)
        sign_in_on_broker(mallory, attacker, public_url)
        planted = next(c["value"] for c in mallory.context.cookies() if c["name"] == "pair_session")

        page = fresh(browser, contexts)
        sign_in_on_broker(page, victim, public_url)
        page.goto(f"http://80--any--one.apps.{SITE}:{port}/")  # any app origin's page, running the app's script
        page.evaluate(f"document.cookie = 'pair_session={planted}; domain={SITE}; path=/'")
        assert len([c for c in page.context.cookies() if c["name"] == "pair_session"]) == 2

        page.goto(public_url + "/")
        body = page.inner_text("body")
        assert attacker.email not in body
        assert page.url.endswith("/signin"), page.url  # two session cookies: neither is trusted
        sign_in_on_broker(page, victim, public_url)  # signing in again deletes the tossed copy
        assert [c["domain"] for c in page.context.cookies() if c["name"] == "pair_session"] == [SITE]
        page.goto(public_url + "/")
        assert victim.email in page.inner_text("body") and attacker.email not in page.inner_text("body")


def test_the_app_credential_ends_with_the_broker_session(
    ports_world: PortsWorld,  # noqa: F811
    browser: Browser,  # noqa: F811
    contexts: list[BrowserContext],
) -> None:
    w = ports_world
    w.share("--level", "shared")
    app_url = w.app_url
    bob = fresh(browser, contexts)
    sign_in_through_broker(bob, w.bob, app_url)
    assert bob.evaluate(WS_ECHO) == "hello"

    # bob signs out of the broker in another tab: the app's open WebSocket closes within 2 s,
    # and the app cookie no longer opens the app
    broker_tab = bob.context.new_page()
    broker_tab.goto(w.public_url + "/")
    with broker_tab.expect_navigation():
        broker_tab.get_by_role("button", name="Sign out").click()
    signed_out = time.monotonic()
    bob.wait_for_function("window.wsEnded !== undefined", timeout=2000)
    assert time.monotonic() - signed_out < 2.0
    ended = bob.evaluate("window.wsEnded")
    assert ended["code"] == 1008 and "session ended" in ended["reason"], ended
    bob.goto(app_url)
    assert "/signin" in bob.url and not demo_page(bob, app_url), bob.url

    # signed in again; then the admin gives bob a new auth key (another process): the same
    key_file = w.bob.key_file
    sign_in_again = bob.context.new_page()
    sign_in_through_broker(sign_in_again, w.bob, app_url)
    assert demo_page(sign_in_again, app_url)
    assert sign_in_again.evaluate(WS_ECHO) == "hello"
    reset = w.broker.admin("users", "reset-key", w.bob.email, "--key-file", str(key_file.with_name("bob-new.key")))
    assert reset.returncode == 0, reset.stderr
    reset_at = time.monotonic()
    sign_in_again.wait_for_function("window.wsEnded !== undefined", timeout=2000)
    assert time.monotonic() - reset_at < 2.0
    response = sign_in_again.goto(app_url + "headers")
    assert response is not None and not demo_page(sign_in_again, app_url) and "/signin" in sign_in_again.url


def test_ctrl_c_with_open_connections_stops_forwarding_cleanly(ports_world: PortsWorld) -> None:  # noqa: F811
    w = ports_world
    local = free_port()
    proc = subprocess.Popen(
        [executable("pair"), "spaces", "forward", "demo", f"{local}:{w.app.port}"],
        cwd=w.bob.dir,
        env=w.bob.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = Output(proc)
    held: list[socket.socket] = []
    try:
        output.wait_for(rf"Forwarding 127\.0\.0\.1:{local} to port {w.app.port} in demo")
        for _ in range(3):  # WebSockets to the app, open when Ctrl-C comes
            connection = socket.create_connection(("127.0.0.1", local), timeout=30)
            connection.sendall(
                b"GET /echo-socket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            head = b""
            while b"\r\n\r\n" not in head:
                head += connection.recv(1024)
            assert head.startswith(b"HTTP/1.1 101"), head
            held.append(connection)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
        output.wait_for("Stopped forwarding.")
        output.finish()
        for word in ("Exception", "CancelledError", "Traceback"):
            assert word not in output.text(), output.text()
    finally:
        for connection in held:
            connection.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        output.finish()
        assert proc.stdout is not None
        proc.stdout.close()
