"""The byte stream the app proxy speaks to a target, and a TCP implementation of it.

In the broker the stream is one the agent opens to 127.0.0.1:PORT in the container (the same
stream primitive as the SSH relay); tests and benchmarks use a plain TCP connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol


class ByteStream(Protocol):
    """A reliable, ordered, full-duplex byte stream to one target.

    - `read(max_bytes)` returns 1..max_bytes bytes, or b"" once the target has finished sending.
    - `write(data)` returns when the stream can take more (back-pressure: it waits while the
      target is slow, so the caller never buffers more than one chunk).
    - `close()` ends both directions; safe to call twice.
    `read` and `write` raise OSError (ConnectionError) when the stream breaks."""

    async def read(self, max_bytes: int) -> bytes: ...

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


class TargetUnavailable(Exception):
    """A stream to the target could not be opened. `str(exc)` is one sentence for the visitor
    (what is wrong, never a secret), e.g. "Nothing is listening on port 8080 in the Space."."""


StreamOpener = Callable[[], Awaitable[ByteStream]]


@dataclass(frozen=True, slots=True)
class Target:
    """Where one request goes: the port in the container (for `Host` and for rewriting the app's
    own URLs) and how to open a new stream to it (raises TargetUnavailable or OSError)."""

    port: int
    open: StreamOpener


class TcpStream:
    """ByteStream over an asyncio TCP connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int) -> bytes:
        return await self._reader.read(max_bytes)

    async def write(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def close(self) -> None:
        if self._writer.is_closing():
            return
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


async def open_tcp(host: str, port: int, *, limit: int = 256 * 1024) -> TcpStream:
    """Connect to host:port; TargetUnavailable when nothing listens there."""
    try:
        reader, writer = await asyncio.open_connection(host, port, limit=limit)
    except ConnectionRefusedError as exc:
        raise TargetUnavailable(f"Nothing is listening on port {port}.") from exc
    return TcpStream(reader, writer)


def tcp_target(host: str, port: int) -> Target:
    """A Target that opens a new TCP connection to host:port for each request."""
    return Target(port, lambda: open_tcp(host, port))
