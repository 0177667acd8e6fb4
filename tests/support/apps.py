"""A small web app to share, and the app proxy mounted in front of it, each in its own uvicorn.

`python -m tests.support.apps app` serves the demo app; `python -m tests.support.apps proxy
[RESPONSE_TIMEOUT]` serves broker.apps.forward behind `*.localhost` addresses: a request for
`PORT--SPACE--OWNER.localhost` goes to 127.0.0.1:PORT, over a new TCP connection (the stream
the agent will give in the broker). Both are served as `pair-broker serve` serves the broker
(broker.serving) and print `listening on http://127.0.0.1:PORT`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.processes import Output, clean_env, stop

REPO = Path(__file__).resolve().parents[2]
CHUNK = 64 * 1024
BROKER_COOKIES = frozenset({"pair_session", "pair_signin", "pair_flash"})

Scope = dict[str, Any]


# -- the demo app ---------------------------------------------------------------------------


class DemoApp:
    """Plain ASGI, so each endpoint controls exactly when its bytes go out."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.upload_started = asyncio.Event()
        self.closes: list[dict[str, Any]] = []  # the browser-side closes the WebSocket echo saw

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["type"] == "http":
            await self.http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self.websocket(scope, receive, send)

    async def http(self, scope: Scope, receive: Any, send: Any) -> None:
        path, query = scope["path"], _query(scope)
        if path == "/":
            await _answer(send, 200, b"<!doctype html><title>demo</title><h1>demo app</h1>", b"text/html")
        elif path == "/headers":
            seen = {"headers": [[n.decode(), v.decode()] for n, v in scope["headers"]], "method": scope["method"]}
            await _answer(send, 200, json.dumps(seen).encode(), b"application/json")
        elif path == "/bytes":
            await self.send_bytes(send, int(query.get("n", "0")), sized=query.get("sized") == "1")
        elif path == "/held":
            self.release.clear()
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"first chunk;", "more_body": True})
            await asyncio.wait_for(self.release.wait(), 60)
            await send({"type": "http.response.body", "body": b"the rest"})
        elif path == "/release":
            self.release.set()
            await _answer(send, 200, b"released")
        elif path == "/upload":
            await self.upload(receive, send)
        elif path == "/upload-started":
            await asyncio.wait_for(self.upload_started.wait(), 60)
            self.upload_started.clear()
            await _answer(send, 200, b"started")
        elif path == "/echo":
            body = b""
            more = True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
            await _answer(send, 200, body, b"application/octet-stream")
        elif path == "/redirect":
            port = scope["server"][1]
            await _answer(send, 302, b"", extra=[(b"location", b"http://localhost:%d/landing?x=1" % port)])
        elif path == "/cookies":
            extra = [
                (b"set-cookie", b"theme=dark; Domain=localhost; Path=/; HttpOnly"),
                (b"set-cookie", b"__pair_app=forged; Path=/"),
                (b"set-cookie", b"lang=en"),
            ]
            await _answer(send, 200, b"cookies", extra=extra)
        elif path == "/hop":
            extra = [(b"connection", b"x-app-hop"), (b"x-app-hop", b"1"), (b"keep-alive", b"timeout=99")]
            await _answer(send, 200, b"hop", extra=extra)
        elif path == "/closes":
            await _answer(send, 200, json.dumps(self.closes).encode(), b"application/json")
        else:
            await _answer(send, 404, b"no such page")

    async def send_bytes(self, send: Any, n: int, *, sized: bool) -> None:
        headers = [(b"content-type", b"application/octet-stream")]
        if sized:
            headers.append((b"content-length", str(n).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        block = b"x" * CHUNK
        left = n
        while left > 0:
            piece = block if left >= CHUNK else block[:left]
            left -= len(piece)
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def upload(self, receive: Any, send: Any) -> None:
        digest = hashlib.sha256()
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            if chunk:
                self.upload_started.set()
            digest.update(chunk)
            size += len(chunk)
            more = message.get("more_body", False)
        await _answer(send, 200, json.dumps({"bytes": size, "sha256": digest.hexdigest()}).encode())

    async def websocket(self, scope: Scope, receive: Any, send: Any) -> None:
        await receive()  # websocket.connect
        if scope["path"] == "/ws-refuse":
            headers = [
                (b"content-type", b"text/plain"),
                (b"x-app-reason", b"no sockets"),
                (b"location", b"http://localhost:%d/login" % scope["server"][1]),
                (b"set-cookie", b"__pair_app=forged"),
            ]
            await send({"type": "websocket.http.response.start", "status": 403, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": b"refused by the app"})
            return
        offered = scope.get("subprotocols", [])
        chosen = "chat" if "chat" in offered else None
        accept_headers = [(b"x-app-accept", b"yes"), (b"set-cookie", b"ws=1; Domain=localhost")]
        await send({"type": "websocket.accept", "subprotocol": chosen, "headers": accept_headers})
        if scope["path"] == "/ws-headers":
            seen = [[n.decode(), v.decode()] for n, v in scope["headers"]]
            await send({"type": "websocket.send", "text": json.dumps({"headers": seen, "path": scope["path"]})})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                self.closes.append({"code": message.get("code"), "reason": message.get("reason", "")})
                return
            text = message.get("text")
            if text is not None and text.startswith("close:"):
                _, code, reason = text.split(":", 2)
                await send({"type": "websocket.close", "code": int(code), "reason": reason})
                return
            if text is not None and text.startswith("big:"):
                await send({"type": "websocket.send", "bytes": b"b" * int(text[4:])})
                continue
            await send(
                {"type": "websocket.send", **({"text": text} if text is not None else {"bytes": message["bytes"]})}
            )


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _query(scope: Scope) -> dict[str, str]:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(scope.get("query_string", b"").decode()))


async def _answer(
    send: Any, status: int, body: bytes, kind: bytes = b"text/plain", extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# -- the proxy in front of it ---------------------------------------------------------------


def proxy_app(response_timeout: float) -> Any:
    from broker.apps import auth
    from broker.apps.forward import forward
    from broker.apps.forwarding import ProxyOptions, error_page, header
    from broker.apps.hosts import AppsDomain
    from broker.apps.streams import tcp_target

    domain = AppsDomain.parse("*.localhost")
    options = ProxyOptions(
        credential_cookies=BROKER_COOKIES | auth.COOKIE_NAMES,
        authorization_prefixes=("pair_",),
        response_timeout=response_timeout,
        close_timeout=1.0,
    )

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        address = domain.parse_host((header(scope["headers"], b"host") or b"").decode("latin-1"))
        if address is None:
            headers, body = error_page(404, "No app here", "This address names no shared port.")
            await send({"type": "http.response.start", "status": 404, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await forward(scope, receive, send, tcp_target("127.0.0.1", address.port), options)

    return app


def serve(app: Any) -> None:
    import uvicorn

    from broker import serving

    sock = serving.listen("127.0.0.1", 0)
    config = serving.config(app, log_level="warning")
    print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])


# -- starting them from tests ---------------------------------------------------------------


@dataclass
class Served:
    proc: subprocess.Popen[str]
    port: int
    output: Output

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def peak_rss_kib(self) -> int:
        """The process's peak resident set so far (VmHWM), in KiB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM in /proc/PID/status")


@contextmanager
def served(*args: str) -> Iterator[Served]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.apps", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=clean_env(),
    )
    output = Output(proc)
    try:
        port = int(output.wait_for(r"listening on http://127\.0\.0\.1:(\d+)").group(1))
        yield Served(proc, port, output)
    finally:
        stop(proc)
        output.finish()
        assert proc.stdout is not None
        proc.stdout.close()


def main() -> None:
    role = sys.argv[1]
    if role == "app":
        serve(DemoApp())
    elif role == "proxy":
        serve(proxy_app(float(sys.argv[2]) if len(sys.argv) > 2 else 120.0))
    else:
        raise SystemExit(f"usage: python -m tests.support.apps app|proxy [RESPONSE_TIMEOUT], not {role!r}")


if __name__ == "__main__":
    main()
