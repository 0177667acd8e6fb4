"""The web terminal for real (issue 11): Debian's Chromium on the real broker's terminal page, a
real Space container (supervisord, sshd and `pair agent` in a mount namespace), and the real
`pair spaces terminal --join` in a pseudo-terminal, all on one shared shell.

alice opens a terminal from her Spaces page; bob (shared) joins it from his as a viewer and in
his laptop terminal; the agent drops his keystrokes until alice lets him type; unsharing ends his
browser and CLI streams within 2 s with the reason; carol (not shared) gets nothing, and a
WebSocket from another origin is refused even with a valid session cookie.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, expect
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from pair.api import endpoints as ep
from tests.support.broker import RealBroker, real_broker
from tests.support.container import Container, container, eventually
from tests.support.people import Person
from tests.support.processes import executable
from tests.support.terminal import Terminal, tty_env
from tests.web.conftest import Screenshot
from tests.web.pages import card, sign_in
from tests.web.test_terminal_page import lines, type_line, wait_screen

pytestmark = pytest.mark.integration

BROKER_ENV = {"PAIR_BROKER_AGENT_INTERVAL": "1"}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RealBroker]:
    with real_broker(tmp_path / "broker", env=BROKER_ENV) as b:
        yield b


@pytest.fixture
def box(broker: RealBroker, tmp_path: Path) -> Iterator[tuple[Container, dict[str, Person]]]:
    people = {n: Person(broker, n, tmp_path, ssh_key=False) for n in ("alice", "bob", "carol")}
    people["alice"].ok("spaces", "authorize", "--user", people["bob"].email, "--name", "demo")
    token = (people["alice"].dir / "SPACE_ID.txt").read_text().strip()
    with container(tmp_path / "space") as space:
        booted = people["alice"].pair("spaces", "bootstrap", token, env=space.env())
        assert booted.returncode == 0, booted.stderr
        yield space, people


def session_cookie(context: BrowserContext) -> str:
    return next(c["value"] for c in context.cookies() if c["name"] == "pair_session")


def refused_status(url: str, headers: dict[str, str]) -> int:
    """The HTTP status a WebSocket upgrade is refused with (fails if it is accepted)."""

    try:
        with connect(url, additional_headers=headers, open_timeout=20):
            pass
    except InvalidStatus as exc:
        return exc.response.status_code
    raise AssertionError(f"the WebSocket upgrade at {url} was accepted")


def test_a_terminal_shared_live_between_the_browser_and_the_cli(
    browser: Browser,
    broker: RealBroker,
    box: tuple[Container, dict[str, Person]],
    tmp_path: Path,
    screenshot: Screenshot,
) -> None:
    space, people = box
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    marks = tmp_path / "marks"
    marks.mkdir(mode=0o777)
    violations: list[str] = []
    contexts = [browser.new_context(base_url=broker.url, viewport={"width": 1100, "height": 700}) for _ in range(3)]
    cli: Terminal | None = None
    try:
        # alice opens a terminal from her Spaces page
        page = contexts[0].new_page()
        page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
        sign_in(page, alice)
        demo = card(page, "demo")
        expect(demo.locator('[data-role="status"]')).to_have_text("Running")
        demo.get_by_role("link", name="Terminal: open a new one in demo").click()
        expect(page.locator("#term-status")).to_have_text("Connected")
        expect(page.locator("#term-role")).to_have_text("driver (typing)")
        type_line(page, "echo $((6*7))")
        wait_screen(page, r"^42\s*$")

        # resizing the window changes `stty size`
        type_line(page, "echo size: $(stty size)")
        wait_screen(page, r"size: \d+ \d+")
        before = lines(page, r"^size: (\d+) (\d+)")[-1]
        page.set_viewport_size({"width": 760, "height": 420})
        type_line(page, "echo again: $(stty size)")
        wait_screen(page, r"again: \d+ \d+")
        after = lines(page, r"^again: (\d+) (\d+)")[-1]
        assert int(after[0]) < int(before[0]) and int(after[1]) < int(before[1])

        # a reload brings back the same shell (same PID) with its earlier output
        type_line(page, "echo pid:$$")
        wait_screen(page, r"^pid:\d+")
        pid = lines(page, r"^pid:(\d+)")[-1]
        joined = re.search(r"join=(term_[a-z2-7]{12})", page.url)
        assert joined, page.url
        terminal_id = joined.group(1)
        page.reload()
        expect(page.locator("#term-status")).to_have_text("Connected")
        wait_screen(page, r"^42\s*$")  # the scrollback, before anything is typed
        type_line(page, "echo pid:$$")
        wait_screen(page, rf"pid:{pid}(.|\n)*pid:{pid}")
        listed = json.loads(alice.ok("spaces", "terminals", "demo", "--json"))
        assert [(t["id"], t["started_by"]) for t in listed] == [(terminal_id, alice.email)]

        # bob sees it on his Spaces page and joins it there: a viewer, seeing her output live
        bobs = contexts[1].new_page()
        bobs.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
        sign_in(bobs, bob)
        join = card(bobs, "demo").get_by_role("link", name=f"Join the terminal {alice.email} started in demo")
        join.click()
        expect(bobs.locator("#term-role")).to_have_text("viewer (read-only)")
        expect(page.locator("#term-people")).to_contain_text(f"{bob.email} · viewer")
        type_line(page, "echo live-$((40+2))")
        wait_screen(bobs, r"live-42")

        # ...and in his laptop terminal: the same shell, the browser's output included
        cli = Terminal(
            executable("pair"),
            ["spaces", "terminal", "demo", "--join", terminal_id],
            cwd=bob.dir,
            env=tty_env(bob.env),
            timeout=30,
        )
        cli.expect_screen(f"pid:{pid}", "live-42")
        # his keystrokes (the CLI sends them; the agent drops them) change nothing in the container
        cli.send(f"touch {marks}/bob-was-here\r")
        type_line(page, "echo checked-$((0+1))")
        wait_screen(page, r"checked-1")
        cli.expect_screen("checked-1")
        assert not (marks / "bob-was-here").exists()

        # alice lets him type: his `touch` lands; she takes it back: dropped again
        page.get_by_role("button", name=f"Let {bob.email} type").click()
        expect(bobs.locator("#term-role")).to_have_text("driver (typing)")
        cli.expect_screen("You may type now.")
        type_line(bobs, f"touch {marks}/bob-was-here && echo touched-$((6*7))")
        wait_screen(page, r"touched-42")
        assert (marks / "bob-was-here").exists()
        screenshot(page, "terminal-live-driver.png")
        screenshot(bobs, "terminal-live-bob.png")
        page.get_by_role("button", name=f"Stop {bob.email} typing").click()
        expect(bobs.locator("#term-role")).to_have_text("viewer (read-only)")
        cli.expect_screen("You watch now (read-only).")
        cli.send(f"touch {marks}/bob-again\r")
        type_line(page, "echo checked-$((1+1))")
        wait_screen(page, r"checked-2")
        cli.expect_screen("checked-2")
        assert not (marks / "bob-again").exists()
        sessions = json.loads(alice.ok("spaces", "sessions", "demo", "--json"))
        assert sorted((s["email"], s["kind"]) for s in sessions) == [
            (alice.email, "terminal"),
            (bob.email, "terminal"),
            (bob.email, "terminal"),
        ]

        # carol, not shared: no page, no WebSocket; a foreign Origin is refused even for alice
        carols = contexts[2].new_page()
        sign_in(carols, carol)
        space_id = next(str(s["id"]) for s in alice.spaces() if s["name"] == "demo")
        answer = carols.goto(ep.WEB_TERMINAL_PAGE.format(space_id=space_id))
        assert answer is not None and answer.status == 404
        ws_url = ep.websocket_url(broker.url, ep.WEB_TERMINAL.format(space_id=space_id))
        carol_cookie = {"Cookie": f"pair_session={session_cookie(contexts[2])}", "Origin": broker.url}
        assert refused_status(ws_url, carol_cookie) == 404
        alice_cookie = f"pair_session={session_cookie(contexts[0])}"
        assert refused_status(ws_url, {"Cookie": alice_cookie, "Origin": "https://evil.example"}) == 403
        assert refused_status(ws_url, {"Cookie": alice_cookie}) == 403  # no Origin: not the page

        # unshare bob: his browser and CLI terminals end within 2 s, saying why
        alice.ok("spaces", "unshare", "--space", "demo", bob.email)
        unshared = time.monotonic()
        reason = f'{alice.email} stopped sharing "demo" with you.'
        expect(bobs.locator("#term-banner")).to_contain_text(reason, timeout=2000)
        assert cli.wait_exit() == 1
        assert time.monotonic() - unshared < 2.0
        assert reason in cli.display()
        expect(page.locator("#term-people")).not_to_contain_text(bob.email)
        type_line(page, "echo still-$((2*3))")  # alice's terminal is not bob's to lose
        wait_screen(page, r"still-6")
        assert violations == []
    finally:
        if cli is not None:
            cli.close()
        for context in contexts:
            context.close()

    # the audit log: opened, joined, role changes, left with bytes; never what was typed
    result = broker.admin("audit", "--target", space_id, "--json")
    assert result.returncode == 0, result.stderr
    rows = [(r["actor"], r["action"], r["detail"]) for r in json.loads(result.stdout)]
    actions = {(actor, action) for actor, action, _ in rows}
    assert {(alice.email, "terminal.open"), (bob.email, "terminal.join"), (alice.email, "terminal.role")} <= actions
    assert (bob.email, "terminal.leave") in actions
    roles = [detail for actor, action, detail in rows if action == "terminal.role"]
    assert roles == [f"{terminal_id}: {bob.email} is now a driver", f"{terminal_id}: {bob.email} is now a viewer"]
    assert not any("bob-was-here" in detail or "6*7" in detail for _, _, detail in rows)
    agent_log = space.log("pair-agent.log")
    assert f"terminal {terminal_id}: opened by {alice.email}" in agent_log
    assert "6*7" not in agent_log and "bob-was-here" not in agent_log  # nothing typed is logged
    eventually(lambda: "Traceback" not in "".join(broker.output.lines), "no traceback")


def test_the_page_joins_its_terminal_again_after_a_broker_restart(
    browser: Browser, broker: RealBroker, box: tuple[Container, dict[str, Person]]
) -> None:
    """A broker restart (every deploy) drops the page's stream with 1012; the page reconnects by
    itself to the same shell, which kept its state."""
    _, people = box
    context = browser.new_context(base_url=broker.url, viewport={"width": 1100, "height": 700})
    try:
        page = context.new_page()
        sign_in(page, people["alice"])
        card(page, "demo").get_by_role("link", name="Terminal: open a new one in demo").click()
        expect(page.locator("#term-status")).to_have_text("Connected")
        type_line(page, "export X=web-$((40+2))")
        port = broker.url.rsplit(":", 1)[1]
        broker.proc.terminate()
        assert broker.proc.wait(15) == 0
        expect(page.locator("#term-banner")).to_contain_text("The connection dropped", timeout=10_000)
        with real_broker(broker.data_dir, "--port", port, env=BROKER_ENV):
            expect(page.locator("#term-status")).to_have_text("Connected", timeout=40_000)
            expect(page.locator("#term-banner")).to_be_hidden()
            type_line(page, 'echo "x=$X"')
            wait_screen(page, r"^x=web-42\s*$")
    finally:
        context.close()
