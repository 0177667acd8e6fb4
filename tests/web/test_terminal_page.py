"""The terminal page (terminal.html + terminal.js + vendored xterm.js) in Debian's Chromium, under
the page's real CSP, against the real terminal engine with real bash.

The broker's routes for terminals come later (issue 11/14); until then a small Starlette app here
plays both the broker and the agent: it renders the page's template with the headers
`security.harden` gives it, and serves the WebSocket with `TerminalManager.connect` and `pump`,
exactly what the agent will do behind the broker's splice. People are named by `?as=EMAIL`.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest
import uvicorn
from playwright.sync_api import Browser, ConsoleMessage, Page, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from broker.web import security
from broker.web.routes import ASSET_VERSION, RECONNECT_RULE, STATIC, TEMPLATES
from pair.api import terminal as tp
from pair.container.terminals import TerminalError, TerminalManager, pump
from tests.support.tools import need_tool
from tests.web.conftest import Screenshot

pytestmark = pytest.mark.integration

ALICE, BOB = "alice@example.com", "bob@example.com"
USER = "nobody" if os.geteuid() == 0 else None


class StarletteSocket:
    """A Starlette WebSocket as `pump` wants it."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws

    async def send(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            await self.ws.send_bytes(message)
        else:
            await self.ws.send_text(message)

    async def __aiter__(self) -> AsyncIterator[str | bytes]:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            yield data if data is not None else message["text"]


class PageServer:
    def __init__(self, workspace: Path) -> None:
        env = {"CODESPACES": "true", "CODESPACE_VSCODE_FOLDER": str(workspace)}
        self.terminals = TerminalManager(USER or "", shell=shutil.which("bash"), env=env)
        self.sockets: set[WebSocket] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.app = Starlette(
            routes=[
                Route("/", self.page),
                WebSocketRoute("/ws", self.stream),
                Mount("/web/static", app=security.StaticHeaders(StaticFiles(directory=STATIC))),
            ]
        )

    async def page(self, request: Request) -> Response:
        nonce = security.new_nonce()
        html = TEMPLATES.get_template("terminal.html").render(
            asset=ASSET_VERSION,
            space_name="demo",
            ws_url="/ws?as=" + request.query_params["as"],
            terminal_id=request.query_params.get("join", ""),
            read_only=False,
            reconnect=RECONNECT_RULE,
            style_nonce=nonce,
        )
        return security.harden(request, HTMLResponse(html), style_nonce=nonce)

    async def stream(self, ws: WebSocket) -> None:
        self.loop = asyncio.get_running_loop()
        query = ws.query_params
        size = {k: int(query[k]) for k in ("cols", "rows") if k in query}
        fields = {"email": query["as"], **size}
        if "join" in query:
            fields |= {"type": "join", "terminal_id": query["join"], "read_only": query.get("read_only") == "1"}
        else:
            fields |= {"type": "open"}
        await ws.accept()
        try:
            attachment = await self.terminals.connect(msgspec.convert(fields, tp.TerminalTarget))
        except TerminalError as exc:
            await ws.send_text(tp.encode(tp.Closed(reason=exc.message, code=exc.code)))
            await ws.close()
            return
        self.sockets.add(ws)
        try:
            await pump(attachment, StarletteSocket(ws))
            await ws.close()
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self.sockets.discard(ws)

    def drop_connections(self) -> None:
        """Close every terminal socket from the server's side, as a network blip would."""

        async def drop() -> None:
            for ws in list(self.sockets):
                await ws.close(code=1011)

        assert self.loop is not None
        asyncio.run_coroutine_threadsafe(drop(), self.loop).result(10)


@pytest.fixture
def workspace() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="pair-terminal-page-", dir="/tmp"))
    folder.chmod(0o777)  # the shell's user (nobody) writes here
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def server(workspace: Path) -> Iterator[tuple[PageServer, str]]:
    need_tool("bash")
    pages = PageServer(workspace)
    config = uvicorn.Config(
        pages.app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="off",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
    )
    runner = uvicorn.Server(config)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    while not runner.started:
        if not thread.is_alive():
            pytest.fail("the test server did not start")
        threading.Event().wait(0.02)
    port = runner.servers[0].sockets[0].getsockname()[1]
    try:
        yield pages, f"http://127.0.0.1:{port}"
    finally:
        if pages.loop is not None:
            asyncio.run_coroutine_threadsafe(pages.terminals.aclose(), pages.loop).result(15)
        runner.should_exit = True
        thread.join(15)


SCREEN_MATCHES = """([source, flags]) => {
  const rows = document.querySelector(".xterm-rows");
  return rows !== null && new RegExp(source, flags).test(rows.innerText.replace(/\\u00a0/g, " "));
}"""


def screen(page: Page) -> str:
    """The terminal's visible lines, one per line (xterm.js's DOM renderer: a div per row)."""
    return page.locator(".xterm-rows").inner_text().replace("\u00a0", " ")


def wait_screen(page: Page, pattern: str) -> None:
    """Wait until the visible lines match `pattern` (a JavaScript regex, multiline)."""
    page.wait_for_function(SCREEN_MATCHES, arg=[pattern, "m"], timeout=10_000)


def type_line(page: Page, text: str) -> None:
    """Type a command line. What a test waits for is computed by the shell (`$((6*7))` → 42), so
    the echo of the typed line, however it wraps, never matches it."""
    page.locator(".xterm-helper-textarea").focus()
    page.keyboard.type(text)
    page.keyboard.press("Enter")


def lines(page: Page, pattern: str) -> list[str]:
    return re.findall(pattern, screen(page), re.MULTILINE)


def test_a_shared_terminal_in_the_browser(
    browser: Browser, server: tuple[PageServer, str], workspace: Path, screenshot: Screenshot
) -> None:
    pages, base = server
    violations: list[str] = []

    def watch(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            violations.append(message.text)

    alice_context = browser.new_context(base_url=base, viewport={"width": 1000, "height": 600})
    bob_context = browser.new_context(base_url=base, viewport={"width": 900, "height": 500})
    try:
        alice = alice_context.new_page()
        alice.on("console", watch)
        alice.goto(f"/?as={ALICE}")
        expect(alice.locator("#term-role")).to_have_text("driver (typing)")
        expect(alice.locator("#term-started-by")).to_have_text(ALICE)
        type_line(alice, "echo $((6*7))")
        wait_screen(alice, r"^42\s*$")
        # xterm's own <style> elements carry the nonce, so the CSP lets them size the rows
        assert alice.locator("style[nonce]").count() >= 1

        # the window's size is the terminal's
        type_line(alice, "echo size: $(stty size)")
        wait_screen(alice, r"size: \d+ \d+")
        before = lines(alice, r"^size: (\d+) (\d+)")[-1]
        alice.set_viewport_size({"width": 700, "height": 400})
        type_line(alice, "echo again: $(stty size)")
        wait_screen(alice, r"again: \d+ \d+")
        after = lines(alice, r"^again: (\d+) (\d+)")[-1]
        assert int(after[0]) < int(before[0]) and int(after[1]) < int(before[1])

        # a reload rejoins the same shell, with its recent output
        type_line(alice, "echo pid:$$")
        wait_screen(alice, r"^pid:\d+")
        pid = lines(alice, r"^pid:(\d+)")[-1]
        expect(alice).to_have_url(re.compile(r"join=term_[a-z2-7]{12}"))
        joined = re.search(r"join=(term_[a-z2-7]{12})", alice.url)
        assert joined
        terminal_id = joined.group(1)
        alice.reload()
        expect(alice.locator("#term-status")).to_have_text("Connected")
        wait_screen(alice, f"pid:{pid}")  # from the scrollback, before anything is typed
        type_line(alice, "echo pid:$$")
        wait_screen(alice, rf"pid:{pid}(.|\n)*pid:{pid}")

        # bob joins: a viewer, who sees alice's output and whose keystrokes change nothing
        bob = bob_context.new_page()
        bob.on("console", watch)
        bob.goto(f"/?as={BOB}&join={terminal_id}")
        expect(bob.locator("#term-role")).to_have_text("viewer (read-only)")
        expect(alice.locator("#term-people")).to_contain_text(f"{BOB} · viewer")
        type_line(alice, "echo hello-from-alice")
        wait_screen(bob, "hello-from-alice")
        screenshot(alice, "terminal-driver.png")
        screenshot(bob, "terminal-viewer.png")
        type_line(bob, f"touch {workspace}/bob-was-here")
        type_line(alice, "echo checked-$((0+1))")
        wait_screen(alice, r"checked-1")
        assert not (workspace / "bob-was-here").exists()

        # alice lets him type; then takes it back
        alice.get_by_role("button", name=f"Let {BOB} type").click()
        expect(bob.locator("#term-role")).to_have_text("driver (typing)")
        type_line(bob, f"touch {workspace}/bob-was-here && echo touched-$((6*7))")
        wait_screen(bob, r"touched-42")
        assert (workspace / "bob-was-here").exists()
        alice.get_by_role("button", name=f"Stop {BOB} typing").click()
        expect(bob.locator("#term-role")).to_have_text("viewer (read-only)")
        type_line(bob, f"touch {workspace}/bob-again")
        type_line(alice, "echo checked-$((1+1))")
        wait_screen(alice, r"checked-2")
        assert not (workspace / "bob-again").exists()

        # a dropped connection: the page reconnects by itself to the same shell
        pages.drop_connections()
        expect(alice.locator("#term-status")).to_contain_text(re.compile("reconnecting", re.IGNORECASE))
        for page in (alice, bob):
            expect(page.locator("#term-status")).to_have_text("Connected")
        type_line(alice, "echo pid:$$")
        wait_screen(alice, rf"pid:{pid}(.|\n)*pid:{pid}(.|\n)*pid:{pid}")

        # the shell exits: both pages say so
        type_line(alice, "exit 3")
        for page in (alice, bob):
            expect(page.locator("#term-banner")).to_contain_text("The shell exited with status 3.")
        assert violations == []
    finally:
        alice_context.close()
        bob_context.close()
