"""A person's SSH stream through the broker's relay (ep.SPACE_TUNNEL), on whichever end carries it:
`pair spaces proxy` (ssh's ProxyCommand, copying to and from its stdin/stdout) and `pair spaces
connect` (which holds the stream itself and hands ssh a socket, pair.cli.handoff). Both are hot
paths: this module loads no CLI framework and no HTTP client, and the WebSocket client only when a
stream is opened."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from pair.api.errors import PairError
from pair.printable import printable

if TYPE_CHECKING:
    from websockets.sync.client import ClientConnection

    from pair.config import Session

# Up to this much of what ssh wrote goes into one WebSocket frame: with larger reads, fewer and
# larger frames cross the relay, so less CPU per MiB here, in the broker and in the agent, which
# share the machine's cores with ssh itself (docs/performance.md).
CHUNK = 256 * 1024


def preload() -> threading.Thread:
    """Import the WebSocket client on a thread (started, daemon), so a caller that waits on the
    network meanwhile (`pair spaces connect`'s API calls) does not pay for it afterwards."""

    def load() -> None:
        import websockets.sync.client  # noqa: F401

    thread = threading.Thread(target=load, name="pair-preload", daemon=True)
    thread.start()
    return thread


def say(sentence: str) -> None:
    """One line for the person, on ssh's stderr; CR LF because their terminal may be in raw mode
    (an interactive session), and escaped because the text may come from the broker."""
    sys.stderr.write(f"\r\npair: {printable(sentence)}\r\n")
    sys.stderr.flush()


def warn(message: str) -> None:
    sys.stderr.write(f"pair: warning: {printable(message)}\n")


def ending(code: int | None, reason: str) -> str | None:
    """The sentence for how the broker's end of the stream closed, or None for a normal end
    (1000, or no status: the container's sshd ended the session). The broker's own closes (4xxx:
    revoked, kicked, Space stopped or deleted, the container lost; 1012 on a restart) carry their
    sentence as reason; a close without one is told by its code (pair.api.closecodes.SENTENCES,
    RFC 6455 §7.4.1 and the IANA registry)."""
    from pair.api.closecodes import SENTENCES, CloseCode

    if code in (CloseCode.NORMAL, CloseCode.NO_STATUS):
        return None
    if code is None:
        code = CloseCode.ABNORMAL  # no close frame at all
    if reason and code != CloseCode.ABNORMAL:
        return reason
    return SENTENCES.get(code, f"The broker closed the connection (WebSocket code {code}).")


def open_stream(session: Session, space_id: str) -> ClientConnection:
    """The accepted WebSocket of a person's SSH stream into `space_id` (an sp_… id), as `session`;
    the broker accepts it once the container's agent has dialled its sshd. The Space's host keys,
    as the broker recorded them, are re-pinned from the acceptance (ep.HOST_KEYS_HEADER) before
    any byte can reach ssh. Raises PairError: the broker's refusal as it worded it (pair.api.errors
    .answered), an untrusted certificate (pair.tls), or an unreachable broker."""
    from websockets.exceptions import InvalidStatus, WebSocketException
    from websockets.sync.client import connect

    from pair import tls
    from pair.api.endpoints import HOST_KEYS_HEADER, SPACE_TUNNEL, websocket_url
    from pair.api.errors import answered

    url = websocket_url(session.url, SPACE_TUNNEL.format(space_id=space_id))
    try:
        ws = connect(
            url,
            ssl=tls.for_url(url),
            additional_headers={"Authorization": f"Bearer {session.token}"},
            compression=None,
            max_size=None,
            open_timeout=15,
            close_timeout=2,
            ping_interval=None,  # ssh keeps the connection alive itself (ServerAliveInterval)
        )
    except InvalidStatus as exc:
        raise answered(exc.response.status_code, exc.response.body or b"", session.url) from None
    except (OSError, TimeoutError, WebSocketException) as exc:
        refused = tls.refusal(exc, session.url)
        if refused is not None:
            raise refused from None
        raise PairError(
            f"Cannot reach the broker at {session.url} ({type(exc).__name__}).",
            "Check that the broker is running and reachable.",
        ) from None
    _pin_host_keys(space_id, ws.response.headers.get(HOST_KEYS_HEADER) if ws.response else None)
    return ws


def _pin_host_keys(space_id: str, header: str | None) -> None:
    """Re-pin the Space's host keys to the broker's record (a rebuilt container, bootstrapped
    again, has new ones), before any byte reaches ssh and so before it checks the server's key."""
    if header is None:
        return  # a broker that does not send them: the pins `connect`/`ssh-config` wrote stay
    from pair import known_hosts
    from pair.api.grammar import Invalid

    try:
        known_hosts.refresh(space_id, [key.strip() for key in header.split(",") if key.strip()])
    except Invalid as exc:
        warn(f"not pinning the host keys the broker sent ({exc.message}); ssh checks the ones pinned before.")
    except OSError as exc:
        warn(f"cannot update {known_hosts.path()} ({exc.strerror or exc}); ssh checks the keys pinned before.")


def carry(ws: ClientConnection, read: Callable[[int], bytes], write: Callable[[bytes], object]) -> str | None:
    """Copy between ssh's end and the stream until either ends: `read(n)` returns ssh's next
    bytes (b"" at its end), `write(data)` gives ssh the container's. Returns the sentence for
    the person when the broker ended the stream (see `ending`), None when ssh closed its end or
    stopped reading, i.e. the stream ended as the person wanted. Closes `ws`."""
    from websockets.exceptions import ConnectionClosed

    ssh_gone = threading.Event()

    def upstream() -> None:
        try:
            while data := read(CHUNK):
                ws.send(data)
            ssh_gone.set()
        except OSError:
            ssh_gone.set()
        except ConnectionClosed:
            pass
        finally:
            ws.close()

    threading.Thread(target=upstream, daemon=True).start()
    try:
        for data in ws:
            write(data if isinstance(data, bytes) else data.encode())
    except ConnectionClosed:
        pass
    except OSError:  # ssh stopped reading
        ssh_gone.set()
        ws.close()
    return None if ssh_gone.is_set() else ending(ws.close_code, ws.close_reason or "")
