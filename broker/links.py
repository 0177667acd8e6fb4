"""A link: one message-framed, full-duplex connection the hub and the splice work with (a person's
WebSocket, an agent's control channel or its end of a stream).

The hub and the splice know this Protocol, not Starlette's WebSocket, so a link to another broker
replica (issue 13: a stream whose person and agent reached different replicas) can stand in.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Protocol

from starlette.websockets import WebSocket, WebSocketState

from pair.api.closecodes import CloseCode

MAX_REASON = 123  # bytes of a close reason in UTF-8 (RFC 6455 §5.5: a control frame's 125, less the code's 2)


def close_reason(text: str) -> str:
    """`text` cut to fit a close frame: at most MAX_REASON bytes of UTF-8, cut between characters
    and ended with "…" when cut."""
    data = text.encode("utf-8", "replace")
    if len(data) <= MAX_REASON:
        return text
    return data[: MAX_REASON - 3].decode("utf-8", "ignore") + "…"


# Seconds a close may take. Sending the close frame waits while the other end is not reading
# (flow control); a person who stops reading must not hold up whoever ends their stream.
CLOSE_WAIT = 2.0


@dataclass(frozen=True, slots=True)
class Closed:
    """The other end closed: its code (1005 when it sent none) and reason."""

    code: int
    reason: str = ""


Frame = str | bytes  # a text message (JSON, for the control protocols) or a binary one (bytes)


class Link(Protocol):
    async def send_text(self, text: str) -> None:
        """Send one text message. Raises an exception (any) once the link is closed."""
        ...

    async def send_bytes(self, data: bytes) -> None:
        """Send one binary message, waiting while the other end is slow."""
        ...

    async def receive(self) -> Frame | Closed:
        """The next message, or `Closed` once the other end closed (and nothing after it)."""
        ...

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Close with `code` and `reason` (cut by close_reason); does nothing if already closed.
        Returns within CLOSE_WAIT seconds even when the other end reads nothing (the close frame
        may then never reach it; the link counts as closed all the same)."""
        ...


class WebSocketLink:
    """A Link over an accepted Starlette WebSocket."""

    __slots__ = ("ws",)

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws

    async def send_text(self, text: str) -> None:
        await self.ws.send({"type": "websocket.send", "text": text})

    async def send_bytes(self, data: bytes) -> None:
        await self.ws.send({"type": "websocket.send", "bytes": data})

    async def receive(self) -> Frame | Closed:
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            return Closed(int(message.get("code") or CloseCode.NO_STATUS), message.get("reason") or "")
        text = message.get("text")
        return text if text is not None else message.get("bytes") or b""

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        if WebSocketState.DISCONNECTED in (self.ws.application_state, self.ws.client_state):
            return
        # The client left meanwhile, or reads nothing (the frame waits for flow control past
        # CLOSE_WAIT): closed all the same. Starlette counts it closed from the first attempt, and
        # the server drops the connection when the handler returns.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(code=int(code), reason=close_reason(reason)), CLOSE_WAIT)
