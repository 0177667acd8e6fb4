"""`pair spaces proxy SPACE_ID`: ssh's ProxyCommand. Connects stdin/stdout to a tunnel through
the broker's relay. ssh starts it for every connection, so it loads only what it needs (no CLI
framework, no HTTP client) and copies with two threads and blocking I/O."""

from __future__ import annotations

import json
import os
import sys
import threading

# ssh talks to a ProxyCommand through pipes, 64 KiB by default on Linux. Larger pipes and reads
# mean fewer, larger WebSocket frames through the relay: less CPU per MiB in this process, the
# broker and the agent, which share the machine's cores with ssh itself (docs/performance.md).
CHUNK = 256 * 1024
PIPE_SIZE = 1024 * 1024  # Linux's default limit for unprivileged users (/proc/sys/fs/pipe-max-size)


def fail(message: str, hint: str = "") -> int:
    sys.stderr.write(f"pair: error: {message}\n" + (f"pair: hint: {hint}\n" if hint else ""))
    return 1


def _widen_pipes() -> None:
    try:
        import fcntl
    except ImportError:  # Windows
        return
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux only; elsewhere pipes stay as they are
    if set_size is None:
        return
    for fd in (0, 1):
        try:
            fcntl.fcntl(fd, set_size, PIPE_SIZE)
        except OSError:  # not a pipe (a terminal, a socket), or over the system's limit
            continue


def main(argv: list[str]) -> int:
    from pair import config
    from pair.api.endpoints import SPACE_TUNNEL
    from pair.api.errors import PairError

    if len(argv) != 1 or not argv[0].startswith("sp_"):
        return fail("usage: pair spaces proxy SPACE_ID", "It is ssh's ProxyCommand; use `pair spaces connect`.")
    try:
        session = config.load_session()
    except PairError as exc:
        return fail(exc.message, exc.hint)
    if session is None:
        return fail("You are not logged in.", config.LOGIN_HINT)

    from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
    from websockets.sync.client import connect

    scheme, rest = session.url.split("://", 1)
    url = ("wss://" if scheme == "https" else "ws://") + rest + SPACE_TUNNEL.format(space_id=argv[0])
    try:
        ws = connect(
            url,
            additional_headers={"Authorization": f"Bearer {session.token}"},
            compression=None,
            max_size=None,
            open_timeout=15,
            close_timeout=2,
            ping_interval=None,  # ssh keeps the connection alive itself (ServerAliveInterval)
        )
    except InvalidStatus as exc:
        try:
            body = json.loads(exc.response.body or b"{}")
        except ValueError:
            body = {}
        return fail(
            body.get("message") or f"The broker refused the tunnel (HTTP {exc.response.status_code}).",
            body.get("detail", ""),
        )
    except (OSError, TimeoutError, WebSocketException) as exc:
        return fail(
            f"Cannot reach the broker at {session.url} ({type(exc).__name__}).",
            "Check that the broker is running and reachable.",
        )

    _widen_pipes()

    def upstream() -> None:
        try:
            while data := os.read(0, CHUNK):
                ws.send(data)
        except (OSError, ConnectionClosed):
            pass
        finally:
            ws.close()

    threading.Thread(target=upstream, daemon=True).start()
    try:
        for data in ws:
            os.write(1, data if isinstance(data, bytes) else data.encode())
    except (ConnectionClosed, OSError):
        pass
    reason = ws.close_reason or ""
    if ws.close_code not in (None, 1000, 1005) and reason:
        sys.stderr.write(f"\r\npair: {reason}\r\n")
    elif ws.close_code in (None, 1006):
        sys.stderr.write("\r\npair: the connection to the broker was lost.\r\n")
    return 0
