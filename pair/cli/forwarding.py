"""`pair spaces forward [SPACE] LOCAL[:REMOTE]…` (as `coder port-forward`): listen on
127.0.0.1:LOCAL and carry each connection, as plain TCP, over its own WebSocket to the broker
(`SPACE_PORT`, the person's session), which asks the Space's agent for a stream to
127.0.0.1:REMOTE in the container. No SSH key or sshd is involved; the owner and the people the
Space is shared with may forward, and the agent's allow-list decides which ports (not pair's own).

Either side of a connection ending ends both, as the agent's side does. SIGINT (Ctrl-C) and
SIGTERM stop listening, close every connection and exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pair.api.closecodes import CloseCode
from pair.api.errors import PairError
from pair.api.models import Space
from pair.printable import printable

CHUNK = 64 * 1024
SPEC_RE = re.compile(r"([0-9]{1,5})(?::([0-9]{1,5}))?")
HINT = "Name ports as LOCAL[:REMOTE], e.g. `pair spaces forward demo 18080:8080 3000`."


@dataclass(frozen=True)
class Spec:
    local: int  # on 127.0.0.1 here
    remote: int  # on 127.0.0.1 in the container


def parse_spec(text: str) -> Spec | None:
    """`LOCAL` or `LOCAL:REMOTE`, each 1–65535; None if `text` is not one."""
    match = SPEC_RE.fullmatch(text)
    if match is None:
        return None
    local = int(match.group(1))
    remote = int(match.group(2)) if match.group(2) else local
    return Spec(local, remote) if 1 <= local <= 65535 and 1 <= remote <= 65535 else None


def split_args(args: list[str]) -> tuple[str | None, list[Spec]]:
    """The Space (the first word, unless it is a port spec) and the specs. Raises PairError."""
    ref = args[0] if args and parse_spec(args[0]) is None else None
    words = args[1:] if ref is not None else args
    specs = []
    for word in words:
        spec = parse_spec(word)
        if spec is None:
            raise PairError(f"{word!r} is not a port to forward.", HINT)
        specs.append(spec)
    if not specs:
        raise PairError("Name at least one port to forward.", HINT)
    locals_ = [s.local for s in specs]
    if len(set(locals_)) != len(locals_):
        raise PairError("Each local port can forward one remote port.", HINT)
    return ref, specs


def run(url: str, token: str, space: Space, specs: list[Spec]) -> int:
    """Forward until SIGINT/SIGTERM; 0 then. Raises PairError when a local port cannot be had."""
    return asyncio.run(_forward(url, token, space, specs))


async def _forward(url: str, token: str, space: Space, specs: list[Spec]) -> int:
    from pair.api.endpoints import SPACE_PORT, websocket_url

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    connections: set[asyncio.Task[None]] = set()  # one per local connection, cancelled on stop
    handlers: set[asyncio.Task[Any]] = set()  # the server's tasks awaiting them, never cancelled
    servers: list[asyncio.Server] = []

    def serve(spec: Spec) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        address = websocket_url(url, SPACE_PORT.format(space_id=space.id, port=spec.remote))

        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            # asyncio's stream server asks this task for its exception when it is done, which
            # raises (and is logged as "Exception in callback") if the task was cancelled
            # (Python < 3.12). So Ctrl-C cancels the inner task and this one always returns.
            handler = asyncio.current_task()
            assert handler is not None
            handlers.add(handler)
            connection = asyncio.create_task(_connection(reader, writer, address, token, spec))
            connections.add(connection)
            try:
                await asyncio.gather(connection, return_exceptions=True)
            finally:
                connections.discard(connection)
                handlers.discard(handler)

        return accepted

    try:
        for spec in specs:
            try:
                server = await asyncio.start_server(serve(spec), "127.0.0.1", spec.local, limit=CHUNK)
            except OSError as exc:
                raise PairError(
                    f"Cannot listen on 127.0.0.1:{spec.local} ({exc.strerror or exc}).",
                    "Choose another local port: LOCAL:REMOTE.",
                ) from exc
            servers.append(server)
            print(f"Forwarding 127.0.0.1:{spec.local} to port {spec.remote} in {space.name}", file=sys.stderr)
        print("Ctrl-C stops.", file=sys.stderr, flush=True)
        await stop.wait()
    finally:
        for server in servers:
            server.close()
        for task in list(connections):
            task.cancel()
        await asyncio.gather(*connections, *handlers, return_exceptions=True)
        for server in servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
    print("Stopped forwarding.", file=sys.stderr)
    return 0


async def _connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, address: str, token: str, spec: Spec
) -> None:
    """One local connection over its own stream; refusals are one line on stderr."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

    try:
        try:
            ws = await connect(
                address,
                additional_headers={"Authorization": f"Bearer {token}"},
                compression=None,
                max_size=None,
                open_timeout=20,
                ping_interval=None,
            )
        except InvalidStatus as exc:
            refusal = _refusal(bytes(exc.response.body or b""), exc.response.status_code)
            print(f"pair: port {spec.remote}: {refusal}", file=sys.stderr)
            return
        except (OSError, TimeoutError, WebSocketException) as exc:
            print(f"pair: port {spec.remote}: cannot reach the broker ({type(exc).__name__}).", file=sys.stderr)
            return

        async def upstream() -> None:
            while data := await reader.read(CHUNK):
                await ws.send(data)

        async def downstream() -> None:
            async for data in ws:
                writer.write(data if isinstance(data, bytes) else data.encode())
                await writer.drain()

        async with ws:
            tasks = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                results = await asyncio.gather(*tasks, return_exceptions=True)
            reason = ws.close_reason
            if ws.close_code not in (None, CloseCode.NORMAL, CloseCode.NO_STATUS) and reason:
                print(f"pair: port {spec.remote}: {printable(reason)}", file=sys.stderr)
            del results  # ConnectionClosed / OSError: the connection ended, which is what we report
    except (ConnectionClosed, OSError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _refusal(body: bytes, status: int) -> str:
    """The broker's JSON error body as one line (its text made printable: it reaches a terminal)."""
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    message = str(data.get("message") or f"the broker refused (HTTP {status}).")
    return printable(f"{message} {data.get('detail') or ''}".strip()[:500])
