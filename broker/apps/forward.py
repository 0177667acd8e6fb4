"""The app proxy's entry point: one ASGI `http` request or `websocket` session to a target."""

from __future__ import annotations

from broker.apps.forwarding import ProxyOptions
from broker.apps.proxy import ASGIReceive, ASGISend, Scope, proxy_http
from broker.apps.streams import Target
from broker.apps.websocket import proxy_websocket


async def forward(scope: Scope, receive: ASGIReceive, send: ASGISend, target: Target, options: ProxyOptions) -> None:
    """Forward an ASGI `http` or `websocket` scope to `target`; other scope types are ignored.

    The caller has already decided the address, the person's access and the target; any
    credential it checked must be in `options.credential_cookies` so the app never sees it."""
    if scope["type"] == "http":
        await proxy_http(scope, receive, send, target, options)
    elif scope["type"] == "websocket":
        await proxy_websocket(scope, receive, send, target, options)
