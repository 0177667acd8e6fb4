"""One HTTP/1.1 request forwarded to an app over a ByteStream, with h11 as the client side.

The request head goes out with the fields broker.apps.forwarding decides; then two tasks run at
once: the *upload* passes the ASGI request body to the app as it arrives (Content-Length or
chunked, as the browser framed it) and afterwards watches for the browser going away; the
*response* reads the app's answer and passes it on with `more_body`, chunk by chunk. Each side
awaits the other end's pace (the stream's `write`, the ASGI server's `send`), so memory stays at
about one chunk per direction whatever the body sizes, and an app may answer before it has read
the whole body.

Each request gets its own stream and sends `Connection: close` (no reuse): a stream is cheap
next to a browser round trip, and nothing ever waits for a pooled connection. Keep-alive
between the browser and the broker is the ASGI server's.

Failures before the response head: a stream that cannot be opened or breaks, or an answer h11
cannot parse → 502; no connection or no head within the options' times → 504; a request h11
refuses to write → 400. After the head the status is gone, so a broken body ends the response
unfinished (the ASGI server then closes the connection, which the browser reports).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import h11

from broker.apps.forwarding import (
    ProxyOptions,
    body_framing,
    downstream_headers,
    error_page,
    public_host,
    public_scheme,
    upstream_headers,
)
from broker.apps.streams import ByteStream, Target, TargetUnavailable

log = logging.getLogger("pair.broker.apps")

Scope = Mapping[str, Any]
ASGIReceive = Any  # Callable[[], Awaitable[dict]]; kept loose so Starlette's and uvicorn's types both fit
ASGISend = Any

GONE = "gone"  # the browser went away
BROKEN = "broken"  # the app stopped taking the request body


class UpstreamError(Exception):
    """The app's side failed before its response head arrived; str is for the visitor."""


async def proxy_http(scope: Scope, receive: ASGIReceive, send: ASGISend, target: Target, options: ProxyOptions) -> None:
    """Forward the ASGI `http` request in `scope` to `target` and stream its answer back.

    Never raises for the app's or the browser's failures: those become 4xx/5xx pages or an
    unfinished response, as the module docstring says."""
    stream = await open_stream(target, options, scope, send)
    if stream is None:
        return
    try:
        await _exchange(scope, receive, send, stream, target, options)
    finally:
        await stream.close()


async def open_stream(target: Target, options: ProxyOptions, scope: Scope, send: ASGISend) -> ByteStream | None:
    """A stream to the target, or None after answering the browser with why not."""
    try:
        return await asyncio.wait_for(target.open(), options.connect_timeout)
    except TargetUnavailable as exc:
        await send_error(send, scope, 502, "This app is not reachable", str(exc))
    except asyncio.TimeoutError:
        detail = f"Port {target.port} did not accept a connection within {options.connect_timeout:g} s."
        await send_error(send, scope, 504, "This app did not answer", detail)
    except OSError:
        await send_error(send, scope, 502, "This app is not reachable", f"Port {target.port} could not be reached.")
    return None


async def send_error(send: ASGISend, scope: Scope, status: int, title: str, detail: str) -> None:
    """Answer with the proxy's own HTML page (websocket scopes: as a denial response if the server
    supports one, else a plain refusal)."""
    headers, body = error_page(status, title, detail)
    if scope["type"] == "websocket":
        if "websocket.http.response" in scope.get("extensions", {}):
            await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1014})
        return
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def request_target(scope: Scope) -> bytes:
    """The request-target as the browser sent it: raw path plus query (RFC 9112 §3.2.1)."""
    path: bytes = scope.get("raw_path") or str(scope["path"]).encode()
    query: bytes = scope.get("query_string", b"")
    return path + b"?" + query if query else path


async def _exchange(
    scope: Scope, receive: ASGIReceive, send: ASGISend, stream: ByteStream, target: Target, options: ProxyOptions
) -> None:
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=options.max_head_bytes)
    framing = body_framing(scope["headers"])
    headers = upstream_headers(scope, target.port, options)
    if isinstance(framing, int):
        headers.append((b"content-length", b"%d" % framing))
    elif framing == "chunked":
        headers.append((b"transfer-encoding", b"chunked"))
    headers.append((b"connection", b"close"))
    try:
        head = conn.send(h11.Request(method=scope["method"], target=request_target(scope), headers=headers))
        end = b"" if framing is not None else conn.send(h11.EndOfMessage())
    except h11.LocalProtocolError:
        await send_error(
            send, scope, 400, "This request cannot be forwarded", "Its request line or headers are invalid."
        )
        return
    try:
        await stream.write(head + (end or b""))
    except OSError:
        await send_error(send, scope, 502, "This app is not reachable", "The connection to the app broke.")
        return

    sent = asyncio.Event()  # the whole request is with the app: the response timeout starts
    upload = asyncio.create_task(_upload(receive, conn, stream, sent, has_body=framing is not None))
    response = asyncio.create_task(_respond(scope, send, conn, stream, target, options, sent))
    try:
        await asyncio.wait({upload, response}, return_when=asyncio.FIRST_COMPLETED)
        if not response.done() and upload.result() == GONE:
            response.cancel()
        await asyncio.wait({response})
    finally:
        for task in (upload, response):
            task.cancel()
        await asyncio.gather(upload, response, return_exceptions=True)
    failure = None if response.cancelled() else response.exception()
    if failure is not None:
        raise failure  # a defect in this module: the app's and the browser's failures are handled


async def _upload(
    receive: ASGIReceive, conn: h11.Connection, stream: ByteStream, sent: asyncio.Event, *, has_body: bool
) -> str:
    """Pass the request body on as it arrives (then set `sent`); then wait for the browser to go
    away. Returns GONE when it did, BROKEN when the app stopped taking the body (its answer may
    still come)."""
    more = has_body
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return GONE
        more = bool(message.get("more_body", False))
        chunk = message.get("body", b"")
        try:
            data = conn.send(h11.Data(data=chunk)) if chunk else b""
            if not more:
                data = (data or b"") + (conn.send(h11.EndOfMessage()) or b"")
            if data:
                await stream.write(data)
        except (OSError, h11.LocalProtocolError):
            sent.set()
            return BROKEN
    sent.set()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return GONE


async def _respond(
    scope: Scope,
    send: ASGISend,
    conn: h11.Connection,
    stream: ByteStream,
    target: Target,
    options: ProxyOptions,
    sent: asyncio.Event,
) -> None:
    head = asyncio.create_task(_read_head(conn, stream, options.chunk_size))
    all_sent = asyncio.create_task(sent.wait())
    try:
        # No deadline while the body is still going up (a slow upload is not a slow app); the
        # app gets response_timeout from then on.
        await asyncio.wait({head, all_sent}, return_when=asyncio.FIRST_COMPLETED)
        response = await asyncio.wait_for(head, options.response_timeout)
    except asyncio.TimeoutError:
        detail = f"Port {target.port} sent no response within {options.response_timeout:g} s."
        await send_error(send, scope, 504, "This app did not answer", detail)
        return
    except (UpstreamError, h11.RemoteProtocolError, OSError) as exc:
        if isinstance(exc, UpstreamError):
            detail = str(exc)
        elif isinstance(exc, OSError):
            detail = "The connection to the app broke."
        else:
            detail = "The app's answer was not valid HTTP/1.1."
        await send_error(send, scope, 502, "This app sent no valid answer", detail)
        return
    finally:
        for task in (head, all_sent):
            task.cancel()  # both done already, unless this task was cancelled
    origin = f"{public_scheme(scope)}://".encode() + public_host(scope)
    headers = downstream_headers(response.headers, port=target.port, origin=origin, options=options)
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.read(options.chunk_size))
            elif isinstance(event, h11.Data):
                await send({"type": "http.response.body", "body": bytes(event.data), "more_body": True})
            elif isinstance(event, h11.EndOfMessage):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            else:  # ConnectionClosed before the end: h11 raises for that, so this is defensive
                raise h11.RemoteProtocolError(f"unexpected {type(event).__name__}")
    except (h11.RemoteProtocolError, OSError) as exc:
        # Leaving the response unfinished makes the ASGI server drop the connection, which tells
        # the browser the body is incomplete.
        log.info("app response on port %d ended early: %s", target.port, exc)


async def _read_head(conn: h11.Connection, stream: ByteStream, chunk_size: int) -> h11.Response:
    """Read until the final response head (1xx interim answers are skipped)."""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.read(chunk_size)
            if not data:
                raise UpstreamError("The app closed the connection without answering.")
            conn.receive_data(data)
        elif isinstance(event, h11.Response):
            return event
        elif isinstance(event, h11.InformationalResponse):
            if event.status_code == 101:
                raise UpstreamError("The app switched protocols on a plain HTTP request.")
        else:
            raise UpstreamError("The app closed the connection without answering.")
