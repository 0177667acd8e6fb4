"""How the broker is served: its listening socket and uvicorn's settings, in one place so the
benchmark baseline (bench/hello_server.py) is served exactly as `pair-broker serve` is."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import uvicorn
    from starlette.types import ASGIApp


def listen(host: str, port: int) -> socket.socket:
    """A bound, listening socket (port 0 picks a free one); OSError if the address is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def config(app: ASGIApp, *, log_level: str = "info", access_log: bool = False) -> uvicorn.Config:
    """One process, uvloop + httptools where installed, no access log by default (it costs ~1/3
    of throughput), and WebSockets without compression (tunnels carry encrypted bytes)."""
    import uvicorn

    return uvicorn.Config(
        app,
        log_level=log_level,
        access_log=access_log,
        lifespan="on",
        loop="auto",
        http="auto",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        server_header=False,
        timeout_graceful_shutdown=5,
    )
