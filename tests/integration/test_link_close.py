"""A close sent to a person who reads nothing returns within CLOSE_WAIT (broker.links), through a
real uvicorn served as the broker serves (broker.serving.config): its close frame would otherwise
wait for flow control forever, and with it whoever ends that person's stream."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from broker import serving
from broker.links import CLOSE_WAIT, WebSocketLink
from pair.api.closecodes import CloseCode

CHUNK = b"x" * 65536


def test_closing_a_websocket_whose_reader_stopped_returns_within_close_wait() -> None:
    paused = threading.Event()  # the server's writes are blocked: the client reads nothing
    took: list[float] = []

    async def flood(ws: WebSocket) -> None:
        await ws.accept()
        link = WebSocketLink(ws)
        loop = asyncio.get_running_loop()
        writer = asyncio.create_task(_write_until_blocked(link, loop, paused))
        await asyncio.to_thread(paused.wait, 30)
        started = time.monotonic()
        await link.close(CloseCode.REVOKED, "bob@example.com stopped sharing.")
        took.append(time.monotonic() - started)
        writer.cancel()

    server = _Server(Starlette(routes=[WebSocketRoute("/ws", flood)]))
    try:
        client = socket.create_connection(("127.0.0.1", server.port))
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.sendall(
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )  # and never reads again
        assert server.handled.wait(30), "the handler never finished"
        assert paused.is_set()
        [seconds] = took
        assert seconds <= CLOSE_WAIT + 1.0
        client.close()
    finally:
        server.stop()


async def _write_until_blocked(link: WebSocketLink, loop: asyncio.AbstractEventLoop, paused: threading.Event) -> None:
    """Send until one send has waited a while (the transport paused writing), then say so."""
    while True:
        send = asyncio.ensure_future(link.send_bytes(CHUNK))
        done, _ = await asyncio.wait({send}, timeout=0.5)
        if not done:
            paused.set()
            await send


class _Server:
    def __init__(self, app: Any) -> None:
        import uvicorn

        self.handled = threading.Event()

        async def wrapped(scope: Any, receive: Any, send: Any) -> None:
            await app(scope, receive, send)
            if scope["type"] == "websocket":
                self.handled.set()

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()  # connections wait in the backlog until uvicorn serves
        self.port = sock.getsockname()[1]
        self.server = uvicorn.Server(serving.config(wrapped, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
