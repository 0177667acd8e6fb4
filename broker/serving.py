"""How the broker is served: its listening socket and uvicorn's settings, in one place so the
benchmark baseline (bench/hello_server.py) is served exactly as `pair-broker serve` is.

Two corrections to uvicorn live here too: its log lines pass through `RedactSecrets` (a one-time
sign-in link's secret is in its URL), and `websocket_protocol()` stops a refused WebSocket (our
JSON denial response: 401, 404, 409) from being logged as an ERROR. And psycopg's own lines
(its pool's "error connecting", "discarding closed connection") go to the broker's log, each at
most once a minute (`OncePerMinute`): an outage of PostgreSQL otherwise repeats them for every
connection attempt."""

from __future__ import annotations

import functools
import gc
import logging
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from broker import credentials

if TYPE_CHECKING:
    import asyncio

    import uvicorn
    from starlette.types import ASGIApp


BACKLOG = 2048  # connections the kernel queues before the server accepts them
# The cyclic garbage collector's thresholds while serving (Python's: 700, 10, 10). With 10,000
# agent channels open the broker holds millions of objects, and collections triggered every
# 700 allocations promoted the objects of heartbeats in flight until full collections over all
# of them took a quarter of the broker's CPU (py-spy --native: gc_collect_main). Rarer young
# collections let those die young; what reference counting frees is untouched.
GC_THRESHOLDS = (50_000, 20, 10)


def collect_garbage_less() -> None:
    """Set GC_THRESHOLDS, and move the objects made so far (modules, settings, the app) out of
    the collector's sight for good (`gc.freeze`): they live as long as the process. Call it once,
    just before serving."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to the address (port 0 picks a free one), not yet listening: connecting
    to it is refused until `sock.listen(BACKLOG)`. OSError if a listening socket has the address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def listen(host: str, port: int) -> socket.socket:
    """A bound, listening socket (port 0 picks a free one); OSError if the address is taken."""
    sock = bind(host, port)
    try:
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


@functools.cache
def websocket_protocol() -> type[asyncio.Protocol]:
    """uvicorn's websockets-sansio protocol, marking the handshake complete once a denial
    response (the ASGI `websocket.http.response` extension) is sent. Without it uvicorn logs
    "ERROR: ASGI callable returned without completing handshake." for every refused WebSocket,
    though the client got its answer (uvicorn's wsproto protocol already does this; upstream:
    Kludex/uvicorn#3138). Drop it once the uvicorn we require has the fix. Built on first use:
    the admin commands never load uvicorn."""
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    class WebSocketProtocol(WebSocketsSansIOProtocol):
        async def send(self, message: Any) -> None:
            await super().send(message)
            if message["type"] == "websocket.http.response.body" and not message.get("more_body", False):
                self.handshake_complete = True

    return WebSocketProtocol


class RedactSecrets(logging.Filter):
    """Replaces the secrets a log line carries (a one-time link's, a token in a query string)
    with `[redacted]`, so nothing read from a log can sign anyone in."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = credentials.redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(credentials.redact(a) if isinstance(a, str) else a for a in record.args)
        return True


class OncePerMinute(logging.Filter):
    """Let one record through per logger and message template every `seconds`; the next one
    let through says how many were held back meanwhile. `clock`: monotonic seconds."""

    def __init__(self, seconds: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.seconds = seconds
        self._clock = clock
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}  # (logger, template) -> (let through at, held)

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = self._clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self.seconds:
            self._seen[key] = (seen[0], seen[1] + 1)
            return False
        self._seen[key] = (now, 0)
        if seen is not None and seen[1]:
            record.msg = f"{record.msg} (and {seen[1]} more like it in the last minute)"
        return True


PSYCOPG_LOGGERS = ("psycopg", "psycopg.pool")  # the driver's and its pool's


def config(
    app: ASGIApp, *, log_level: str = "info", access_log: bool = False, forwarded_allow_ips: str = ""
) -> uvicorn.Config:
    """One process, uvloop + httptools where installed, no access log by default (it costs ~1/3
    of throughput), and WebSockets without compression (SSH streams carry encrypted bytes). The
    broker's own log (`pair.broker`) is written like uvicorn's, and every line is redacted.
    `forwarded_allow_ips`: the proxies whose X-Forwarded-For/-Proto are believed (uvicorn's
    ProxyHeadersMiddleware; empty: uvicorn's default, FORWARDED_ALLOW_IPS or 127.0.0.1)."""
    import uvicorn

    cfg = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=access_log,
        lifespan="on",
        loop="auto",
        http="auto",
        ws=websocket_protocol(),
        ws_per_message_deflate=False,
        server_header=False,
        timeout_graceful_shutdown=5,
        proxy_headers=True,
        forwarded_allow_ips=forwarded_allow_ips or None,
    )
    # uvicorn.Config configured logging just now: its handlers write every uvicorn line.
    handlers = logging.getLogger("uvicorn").handlers + logging.getLogger("uvicorn.access").handlers
    for handler in handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets())
    ours = logging.getLogger("pair.broker")
    ours.handlers = list(logging.getLogger("uvicorn").handlers)
    ours.setLevel(logging.getLogger("uvicorn.error").level)
    ours.propagate = False
    driver = logging.getLogger(PSYCOPG_LOGGERS[0])  # its children's records reach its handlers
    driver.handlers = list(ours.handlers)
    driver.propagate = False
    once = OncePerMinute()
    for name in PSYCOPG_LOGGERS:  # a logger's filters see only its own records, not its children's
        logger = logging.getLogger(name)
        if not any(isinstance(f, OncePerMinute) for f in logger.filters):
            logger.addFilter(once)
    return cfg
