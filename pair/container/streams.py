"""The agent's end of a stream: which targets it will dial (the allow-list), and the copying.

The broker names a target (pair.api.models.StreamTarget), never an address; each kind maps to
one dialer (`Agent._stream` chooses by the target's type; the rules are here):

- `ssh` → 127.0.0.1:SSH_PORT, the Space's sshd;
- `pty` → the Space's terminals (pair.container.terminals.TerminalManager);
- `tcp` → 127.0.0.1:PORT and nothing else: loopback only, 1..65535, and never pair's own ports
  in the container (sshd's) unless the owner shared that port on purpose (`tcp_refusal`, the
  one place that decides).

A byte stream (ssh, tcp) carries binary WebSocket frames both ways; a terminal stream speaks
pair.api.terminal's protocol through `terminals.pump`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from pair.api.closecodes import CloseCode
from pair.api.models import RefusalCode
from pair.container.health import os_error

CHUNK = 64 * 1024
MIN_PORT, MAX_PORT = 1, 65535  # RFC 793: a port is 16 bits, and 0 is no port to connect to


class Refused(Exception):
    """The agent will not or cannot open a stream. `message` is one sentence for the person;
    `code` one of pair.api.models.StreamRefused's: not_allowed, unreachable."""

    def __init__(self, message: str, code: RefusalCode) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def tcp_refusal(port: int, *, shared: bool, reserved: Collection[int]) -> str | None:
    """Why the agent must not dial 127.0.0.1:`port` for a TCP stream, as one sentence; None if it
    may. `reserved` are pair's own ports in the container (sshd's): allowed only when `shared`,
    i.e. the broker says the Space's owner shared that port on purpose (issue 12)."""
    if not MIN_PORT <= port <= MAX_PORT:
        return f"{port} is not a TCP port (ports are {MIN_PORT} to {MAX_PORT})."
    if port in reserved and not shared:
        return f"Port {port} is pair's own in the container; only its owner can share it, on purpose."
    return None


async def dial(port: int, what: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to 127.0.0.1:`port`; `what` names it for people ("sshd on port 2222").
    Raises Refused (`unreachable`) when nothing answers."""
    try:
        return await asyncio.open_connection("127.0.0.1", port, limit=CHUNK)
    except OSError as exc:
        raise Refused(f"{what} in the container is not reachable ({os_error(exc)}).", "unreachable") from exc


async def copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ws: ClientConnection, target: str) -> str:
    """Copy bytes between a TCP connection to `target` ("sshd", "port 8080") and the broker's end
    of a stream until either side ends; every task's end is collected. Returns how it ended, for
    the agent's log: "sshd closed the connection", "the person's side closed", the broker's close."""

    async def to_broker() -> str:
        while data := await reader.read(CHUNK):
            await ws.send(data)
        return f"{target} closed the connection"

    async def to_target() -> str:
        async for data in ws:
            writer.write(data if isinstance(data, bytes) else data.encode())
            await writer.drain()
        return "the person's side closed"

    tasks = [asyncio.create_task(to_broker()), asyncio.create_task(to_target())]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)  # every error collected
    outcome = results[tasks.index(next(iter(done)))]
    rcvd = ws.protocol.close_rcvd
    if rcvd is not None and rcvd.code != CloseCode.NORMAL:
        return f"the broker closed it ({closed(rcvd.code, rcvd.reason)})"
    if isinstance(outcome, str):
        return outcome
    return error(outcome) if isinstance(outcome, BaseException) else "closed"


def closed(code: int | None, reason: str) -> str:
    """`code reason` of a WebSocket close, e.g. `1012 The broker is restarting.`"""
    if code is None:
        return "no close frame: the connection dropped"
    return f"{code} {reason}".strip()


def close_of(exc: ConnectionClosed) -> str:
    """`closed` of the close frame the broker sent, if it sent one."""
    frame = exc.rcvd
    return closed(frame.code, frame.reason) if frame is not None else closed(None, "")


def error(exc: BaseException) -> str:
    """How a stream failed, for the agent's log."""
    if isinstance(exc, ConnectionClosed):
        return f"the broker closed it ({close_of(exc)})"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
