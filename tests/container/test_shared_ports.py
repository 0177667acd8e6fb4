"""Shared ports for real (issue 12): a web app with a page and a WebSocket echo runs in a Space's
container (supervisord, sshd, `pair agent`); alice shares its port; people open its URL in
Debian's Chromium, sign in through the broker's origin, and come back with that app origin's own
credential; levels, unshare and the app's view of the visitor are checked as they see them.

The broker's public URL is `http://pair.test:PORT` and the apps domain `*.apps.pair.test`, which
Chromium resolves to 127.0.0.1 (`--host-resolver-rules`): app origins are then *same-site* with
the broker, the case the broker must defend (an app's page posting to the broker as its visitor).
The container shares this machine's network, so the demo app on 127.0.0.1 is in the container.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from tests.container.conftest import BROKER_ENV
from tests.support.apps import Served, served
from tests.support.broker import RealBroker, real_broker
from tests.support.chromium import chromium
from tests.support.container import Container, container, eventually, free_port
from tests.support.people import Person
from tests.support.processes import Output, executable
from tests.support.tools import need_tool

pytestmark = pytest.mark.integration

SITE = "pair.test"
APPS = f"*.apps.{SITE}"
RESOLVE_SITE = [f"--host-resolver-rules=MAP {SITE} 127.0.0.1, MAP *.{SITE} 127.0.0.1"]
# Opens a WebSocket to the page's own origin, sends `hello`, resolves with the echo; the socket
# stays open as window.held, and window.wsEnded records how it ended.
WS_ECHO = """() => new Promise((resolve, reject) => {
  const ws = new WebSocket(location.origin.replace(/^http/, "ws") + "/echo-socket");
  window.held = ws;
  ws.onopen = () => ws.send("hello");
  ws.onmessage = (e) => resolve(e.data);
  ws.onerror = () => reject(new Error("websocket error"));
  ws.onclose = (e) => { window.wsEnded = {code: e.code, reason: e.reason}; };
})"""


@dataclass
class PortsWorld:
    broker: RealBroker
    public_url: str
    alice: Person
    bob: Person
    carol: Person
    box: Container
    app: Served
    space_id: str

    def share(self, *args: str) -> str:
        return self.alice.ok("spaces", "ports", "share", str(self.app.port), "demo", *args)

    @property
    def app_url(self) -> str:
        listing = json.loads(self.alice.ok("spaces", "ports", "list", "demo", "--json"))
        return str(next(p["url"] for p in listing["shared"] if p["port"] == self.app.port))


@pytest.fixture
def ports_world(tmp_path: Path) -> Iterator[PortsWorld]:
    port = free_port()
    public_url = f"http://{SITE}:{port}"
    env = {**BROKER_ENV, "PAIR_BROKER_APPS_DOMAIN": APPS}
    with real_broker(tmp_path / "broker", "--public-url", public_url, env=env, port=port) as broker:
        alice, bob, carol = (Person(broker, n, tmp_path, ssh_key=False) for n in ("alice", "bob", "carol"))
        alice.ok("spaces", "authorize", "--user", bob.email, "--name", "demo")
        token = (alice.dir / "SPACE_ID.txt").read_text().strip()
        home = tmp_path / "space"
        home.mkdir(mode=0o755)
        (home / "broker-url").write_text(f"{broker.url}\n")  # as install.sh --broker-url: pair.test is the browsers'
        with container(home) as box, served("app") as app:
            booted = alice.pair("spaces", "bootstrap", token, env=box.env())
            assert booted.returncode == 0, booted.stderr
            eventually(lambda: alice.state("demo") == "running", "the Space is running")
            space_id = next(str(s["id"]) for s in alice.spaces() if s["name"] == "demo")
            yield PortsWorld(broker, public_url, alice, bob, carol, box, app, space_id)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium(RESOLVE_SITE) as launched:
        yield launched


def sign_in_through_broker(page: Page, person: Person, app_url: str) -> None:
    """Open the app; the broker's sign-in form appears on its own origin; fill it in."""
    page.goto(app_url)
    assert page.url.startswith(f"http://{SITE}:") and "/signin?next=" in page.url, page.url
    page.fill("#email", person.email)
    page.fill("#auth_key", person.key_file.read_text().strip())
    with page.expect_navigation():
        page.click("button[type=submit]")
    page.wait_for_load_state()


def demo_page(page: Page, app_url: str) -> bool:
    return page.url.startswith(app_url) and page.locator("h1").inner_text() == "demo app"


def test_a_port_shared_at_each_level_in_chromium(ports_world: PortsWorld, browser: Browser) -> None:
    w = ports_world
    listing = json.loads(w.alice.ok("spaces", "ports", "list", "demo", "--json"))
    assert listing["enabled"] and listing["shared"] == []
    assert w.app.port in eventually(
        lambda: json.loads(w.alice.ok("spaces", "ports", "list", "demo", "--json"))["listening"],
        "the agent reports the app's port as a candidate",
    )
    out = w.share("--level", "shared", "--label", "Demo app")
    app_url = w.app_url
    assert app_url == f"http://{w.app.port}--demo--alice.apps.{SITE}:{w.public_url.rsplit(':', 1)[1]}/"
    assert app_url in out

    contexts: list[BrowserContext] = []

    def fresh() -> Page:
        contexts.append(browser.new_context())
        return contexts[-1].new_page()

    try:
        # shared: bob signs in through the broker and gets the page and its WebSocket
        bob = fresh()
        sign_in_through_broker(bob, w.bob, app_url)
        assert demo_page(bob, app_url), bob.url
        assert bob.evaluate(WS_ECHO) == "hello"
        answer = bob.goto(app_url + "headers")
        assert answer is not None
        seen = json.loads(answer.text())
        names = {n.lower() for n, _ in seen["headers"]}
        cookies = " ".join(v for n, v in seen["headers"] if n.lower() == "cookie")
        assert "authorization" not in names
        for credential in ("pair_session", "pair_app", "pair_signin", "pair_flash"):
            assert credential not in cookies, cookies
        assert bob.context.cookies(w.public_url)  # bob's broker session exists, on the broker's origin only

        # carol is refused at `shared`, gets in at `authenticated`
        carol = fresh()
        sign_in_through_broker(carol, w.carol, app_url)
        assert "You cannot open port" in carol.content() and not carol.url.startswith(app_url)
        w.share("--level", "authenticated")
        carol.goto(app_url)
        assert demo_page(carol, app_url), carol.url

        # public: a browser that never signed in anywhere
        w.share("--level", "public")
        anonymous = fresh()
        anonymous.goto(app_url)
        assert demo_page(anonymous, app_url)
        assert anonymous.evaluate(WS_ECHO) == "hello"

        # owner: the anonymous visitor's open WebSocket closes within 2 s; bob, signed in to the
        # app before, is refused
        w.share("--level", "owner")
        narrowed = time.monotonic()
        anonymous.wait_for_function("window.wsEnded !== undefined", timeout=2000)
        assert time.monotonic() - narrowed < 2.0
        ended = anonymous.evaluate("window.wsEnded")
        assert ended["code"] == 1008 and "changed who can open port" in ended["reason"], ended
        response = bob.goto(app_url)
        assert response is not None and response.status == 403
        assert "You cannot open this app" in bob.content()

        # the app's own pages cannot use alice's broker session (same-site with the broker)
        alice = fresh()
        sign_in_through_broker(alice, w.alice, app_url)
        assert demo_page(alice, app_url)
        attempts = alice.evaluate(
            """async ([broker, spaceId]) => {
              const out = {};
              try { await fetch(broker + "/web/spaces.json", {credentials: "include"}); out.read = "read"; }
              catch (e) { out.read = "blocked"; }
              await fetch(broker + "/spaces/" + spaceId + "/delete",
                          {method: "POST", mode: "no-cors", credentials: "include",
                           body: new URLSearchParams({csrf_token: "guess"})});
              try { const r = await fetch(broker + "/api/v1/spaces", {credentials: "include"}); out.api = r.status; }
              catch (e) { out.api = "blocked"; }
              return out;
            }""",
            [w.public_url, w.space_id],
        )
        assert attempts == {"read": "blocked", "api": "blocked"}
        assert w.alice.state("demo") == "running"  # the POST did nothing

        # unshare bob: his open WebSocket to the app closes within 2 s, with the reason
        w.share("--level", "shared")
        bob.goto(app_url)
        assert demo_page(bob, app_url)
        assert bob.evaluate(WS_ECHO) == "hello"
        w.alice.ok("spaces", "unshare", "--space", "demo", w.bob.email)
        unshared = time.monotonic()
        bob.wait_for_function("window.wsEnded !== undefined", timeout=2000)
        assert time.monotonic() - unshared < 2.0
        closed = bob.evaluate("window.wsEnded")
        assert closed["code"] == 1008 and "stopped sharing" in closed["reason"], closed

        # unshare the port: its URL answers a clear 404 page
        w.alice.ok("spaces", "ports", "unshare", str(w.app.port), "demo")
        response = anonymous.goto(app_url)
        assert response is not None and response.status == 404
        assert "Nothing is shared here" in anonymous.content()
    finally:
        for context in contexts:
            context.close()


def test_forward_carries_many_connections_and_stops_on_ctrl_c(ports_world: PortsWorld) -> None:
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
    try:
        output.wait_for(rf"Forwarding 127\.0\.0\.1:{local} to port {w.app.port} in demo")
        page = subprocess.run(
            [need_tool("curl"), "-sS", "--max-time", "20", f"http://127.0.0.1:{local}/"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert page.returncode == 0 and "demo app" in page.stdout, page.stderr

        def get(n: int) -> bytes:
            connection = http.client.HTTPConnection("127.0.0.1", local, timeout=60)
            try:
                connection.request("GET", f"/bytes?n={1000 + n}&sized=1")
                response = connection.getresponse()
                assert response.status == 200
                return response.read()
            finally:
                connection.close()

        with concurrent.futures.ThreadPoolExecutor(100) as pool:
            bodies = list(pool.map(get, range(100)))
        assert [len(b) for b in bodies] == [1000 + n for n in range(100)]

        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
        output.wait_for("Stopped forwarding.")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        output.finish()
        assert proc.stdout is not None
        proc.stdout.close()
