"""A WebSocket upgrade forwarded to an app over a ByteStream, with wsproto as the client side.

The browser's opening handshake (an ASGI `websocket` scope) becomes the proxy's own handshake to
the app (RFC 6455 §4.1): the same target, the browser's subprotocols, and its headers as
broker.apps.forwarding passes them (Host, X-Forwarded-*, no broker cookie). Only when the app
accepts does the browser get `websocket.accept`, with the subprotocol and extra headers the app
chose; an app that refuses gets its HTTP answer relayed as the ASGI denial response (when the
server offers the `websocket.http.response` extension, else a plain close). No extension is
negotiated with the app (no permessage-deflate): the browser side compresses, or not, on its own.

Then messages go both ways as whole messages (ASGI has no fragments), each side answering its own
pings; a message from the app larger than `max_message_bytes` (characters for text) closes both
sides with 1009. Close codes and reasons pass through, except those no endpoint may send
(RFC 6455 §7.4.1): the browser's 1005 (no code) goes on as a close frame without one, its 1006
(it vanished) as 1001 "going away"; the app's 1005 as 1000, and an app that vanishes or breaks
the protocol as 1014 "bad gateway" (IANA WebSocket close code registry).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from broker.apps.forwarding import (
    WEBSOCKET_HANDSHAKE,
    ProxyOptions,
    downstream_headers,
    public_host,
    public_scheme,
    upstream_headers,
)
from broker.apps.proxy import ASGIReceive, ASGISend, Scope, UpstreamError, open_stream, request_target, send_error
from broker.apps.streams import ByteStream, Target

BAD_GATEWAY = 1014
# Codes an endpoint may put in a close frame (RFC 6455 §7.4.1 and the IANA registry).
SENDABLE = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


def to_app_code(code: int) -> int:
    """The close code to send the app for the browser's `websocket.disconnect` code."""
    if code == CloseReason.NO_STATUS_RCVD:
        return CloseReason.NO_STATUS_RCVD  # wsproto sends a close frame without a code
    if code in (CloseReason.ABNORMAL_CLOSURE, CloseReason.TLS_HANDSHAKE_FAILED):
        return CloseReason.GOING_AWAY
    return code if _sendable(code) else CloseReason.NORMAL_CLOSURE


def to_browser_code(code: int) -> int:
    """The close code to send the browser for the app's close (or loss of the stream: 1006)."""
    if code == CloseReason.NO_STATUS_RCVD:
        return CloseReason.NORMAL_CLOSURE
    return code if _sendable(code) else BAD_GATEWAY


def _sendable(code: int) -> bool:
    return code in SENDABLE or 3000 <= code <= 4999


async def proxy_websocket(
    scope: Scope, receive: ASGIReceive, send: ASGISend, target: Target, options: ProxyOptions
) -> None:
    """Forward the ASGI `websocket` session in `scope` to `target` until either side closes.

    Never raises for the app's or the browser's failures (see the module docstring)."""
    if (await receive())["type"] != "websocket.connect":
        return
    stream = await open_stream(target, options, scope, send)
    if stream is None:
        return
    try:
        ws = await _handshake(scope, send, stream, target, options)
        if ws is not None:
            await _relay(receive, send, ws, stream, options)
    finally:
        await stream.close()


async def _handshake(
    scope: Scope, send: ASGISend, stream: ByteStream, target: Target, options: ProxyOptions
) -> WSConnection | None:
    ws = WSConnection(ConnectionType.CLIENT)
    host, *headers = upstream_headers(scope, target.port, options, websocket=True)
    request = Request(
        host=host[1].decode("latin-1"),
        target=request_target(scope).decode("latin-1"),
        subprotocols=list(scope.get("subprotocols", [])),
        extra_headers=headers,
    )
    try:
        opening = ws.send(request)
    except (LocalProtocolError, UnicodeEncodeError):
        await send_error(
            send, scope, 400, "This request cannot be forwarded", "Its request line or headers are invalid."
        )
        return None
    try:
        await stream.write(opening)
        answer = await asyncio.wait_for(_read_answer(ws, stream, options), options.response_timeout)
    except asyncio.TimeoutError:
        detail = f"Port {target.port} did not answer the WebSocket upgrade within {options.response_timeout:g} s."
        await send_error(send, scope, 504, "This app did not answer", detail)
        return None
    except (UpstreamError, RemoteProtocolError, OSError) as exc:
        detail = (
            str(exc) if isinstance(exc, UpstreamError) else "The app's answer to the WebSocket upgrade was invalid."
        )
        await send_error(send, scope, 502, "This app sent no valid answer", detail)
        return None
    if isinstance(answer, AcceptConnection):
        headers = _to_browser(answer.extra_headers, scope, target, options)
        await send({"type": "websocket.accept", "subprotocol": answer.subprotocol, "headers": headers})
        return ws
    await _deny(scope, send, answer, _to_browser(answer.headers, scope, target, options))
    return None


@dataclass
class _Refusal:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


async def _read_answer(ws: WSConnection, stream: ByteStream, options: ProxyOptions) -> AcceptConnection | _Refusal:
    refusal: _Refusal | None = None
    while True:
        data = await stream.read(options.chunk_size)
        ws.receive_data(data or None)
        for event in ws.events():
            if isinstance(event, AcceptConnection):
                return event
            if isinstance(event, RejectConnection):
                refusal = _Refusal(event.status_code, list(event.headers), b"")
                if not event.has_body:
                    return refusal
            elif isinstance(event, RejectData) and refusal is not None:
                room = options.max_denial_body - len(refusal.body)
                refusal.body += bytes(event.data[: max(room, 0)])
                if event.body_finished:
                    return refusal
        if not data:
            if refusal is not None:
                return refusal
            raise UpstreamError("The app closed the connection without answering the WebSocket upgrade.")


def _to_browser(
    headers: Iterable[tuple[bytes, bytes]], scope: Scope, target: Target, options: ProxyOptions
) -> list[tuple[bytes, bytes]]:
    """The app's handshake answer fields as any response's (broker.apps.forwarding), less those
    the ASGI server writes itself: the handshake's own, and the framing of a refusal's body."""
    origin = f"{public_scheme(scope)}://".encode() + public_host(scope)
    cleaned = downstream_headers(headers, port=target.port, origin=origin, options=options)
    return [(n, v) for n, v in cleaned if n not in WEBSOCKET_HANDSHAKE and n != b"content-length"]


async def _deny(scope: Scope, send: ASGISend, refusal: _Refusal, headers: list[tuple[bytes, bytes]]) -> None:
    """Relay the app's refusal as the ASGI denial response (the server frames the body)."""
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "websocket.http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": refusal.body})


@dataclass
class _Closing:
    browser_gone: bool = False  # the browser's disconnect arrived: send it nothing more
    browser_told: bool = False  # we sent the browser websocket.close


async def _relay(
    receive: ASGIReceive, send: ASGISend, ws: WSConnection, stream: ByteStream, options: ProxyOptions
) -> None:
    closing = _Closing()
    from_browser = asyncio.create_task(_browser_to_app(receive, ws, stream, closing))
    from_app = asyncio.create_task(_app_to_browser(send, ws, stream, options, closing))
    try:
        await asyncio.wait({from_browser, from_app}, return_when=asyncio.FIRST_COMPLETED)
        if from_browser.done() and not from_app.done():
            # Give the app a moment to answer our close (or to flush what it sent before it).
            await asyncio.wait({from_app}, timeout=options.close_timeout)
    finally:
        for task in (from_browser, from_app):
            task.cancel()
        await asyncio.gather(from_browser, from_app, return_exceptions=True)
    if not closing.browser_gone and not closing.browser_told:
        with contextlib.suppress(Exception):  # the browser may be gone already
            await send({"type": "websocket.close", "code": BAD_GATEWAY, "reason": "the app's connection ended"})


async def _browser_to_app(receive: ASGIReceive, ws: WSConnection, stream: ByteStream, closing: _Closing) -> None:
    try:
        while True:
            message = await receive()
            if message["type"] == "websocket.receive":
                data = message.get("bytes")
                event: Event = (
                    BytesMessage(data=data) if data is not None else TextMessage(data=message.get("text", ""))
                )
                await stream.write(ws.send(event))
            elif message["type"] == "websocket.disconnect":
                closing.browser_gone = True
                if ws.state is ConnectionState.OPEN:
                    code = to_app_code(int(message.get("code", CloseReason.NO_STATUS_RCVD)))
                    reason = (message.get("reason") or "") if code != CloseReason.NO_STATUS_RCVD else ""
                    await stream.write(ws.send(CloseConnection(code=code, reason=reason)))
                return
    except (OSError, LocalProtocolError):
        return  # the app's side is gone; _app_to_browser sees the end of its stream


async def _app_to_browser(
    send: ASGISend, ws: WSConnection, stream: ByteStream, options: ProxyOptions, closing: _Closing
) -> None:
    text: list[str] = []  # the fragments of the message being received
    binary: list[bytes] = []
    size = 0

    async def tell_browser(code: int, reason: str) -> None:
        if not closing.browser_gone and not closing.browser_told:
            closing.browser_told = True
            await send({"type": "websocket.close", "code": code, "reason": reason})

    ended = False
    while True:
        # Events first: the app's first frames may have come with its handshake answer.
        for event in ws.events():
            if isinstance(event, (TextMessage, BytesMessage)):
                if isinstance(event, TextMessage):
                    text.append(event.data)
                else:
                    binary.append(bytes(event.data))
                size += len(event.data)
                if size > options.max_message_bytes:
                    if ws.state is ConnectionState.OPEN:
                        too_big = CloseConnection(code=CloseReason.MESSAGE_TOO_BIG, reason="message too big")
                        with contextlib.suppress(OSError):
                            await stream.write(ws.send(too_big))
                    limit = options.max_message_bytes
                    await tell_browser(CloseReason.MESSAGE_TOO_BIG, f"a message from the app exceeded {limit} bytes")
                    return
                if event.message_finished:
                    if isinstance(event, TextMessage):
                        message: dict[str, object] = {"type": "websocket.send", "text": "".join(text)}
                    else:
                        message = {"type": "websocket.send", "bytes": b"".join(binary)}
                    text, binary, size = [], [], 0
                    if not closing.browser_gone:
                        await send(message)
            elif isinstance(event, Ping):
                with contextlib.suppress(OSError, LocalProtocolError):
                    await stream.write(ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                if ws.state is ConnectionState.REMOTE_CLOSING:
                    with contextlib.suppress(OSError, LocalProtocolError):
                        await stream.write(ws.send(event.response()))
                reason = event.reason or ""
                if event.code == CloseReason.ABNORMAL_CLOSURE:
                    reason = "the app's connection ended"
                await tell_browser(to_browser_code(event.code), reason)
                return
        if ended:
            return
        try:
            data = await stream.read(options.chunk_size)
        except OSError:
            data = b""
        ws.receive_data(data or None)
        ended = not data
