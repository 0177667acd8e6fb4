"""`pair spaces proxy SPACE_ID`: ssh's ProxyCommand. Connects stdin/stdout to a tunnel through
the broker's relay. ssh starts it for every connection, so it loads only what it needs (no CLI
framework, no HTTP client) and copies with two threads and blocking I/O."""

from __future__ import annotations

import os
import signal
import sys
import threading

from pair.printable import printable

# ssh talks to a ProxyCommand through pipes, 64 KiB by default on Linux. Larger pipes and reads
# mean fewer, larger WebSocket frames through the relay: less CPU per MiB in this process, the
# broker and the agent, which share the machine's cores with ssh itself (docs/performance.md).
CHUNK = 256 * 1024
PIPE_SIZE = 1024 * 1024  # Linux's default limit for unprivileged users (/proc/sys/fs/pipe-max-size)


def say(sentence: str) -> None:
    """One line for the person, on ssh's stderr; CR LF because their terminal may be in raw mode
    (an interactive session), and escaped because the text may come from the broker."""
    sys.stderr.write(f"\r\npair: {printable(sentence)}\r\n")


def fail(message: str, hint: str = "") -> int:
    sys.stderr.write(f"pair: error: {printable(message)}\n" + (f"pair: hint: {printable(hint)}\n" if hint else ""))
    return 1


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
    # Ctrl-C reaches ssh and this process alike (one process group): ssh decides what it means
    # (a remote shell gets it, `ssh -N` exits and closes our pipes), so it is no reason to stop
    # here, or to print a traceback. SIGHUP (ssh exiting) and SIGTERM end the process quietly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return _run(argv)
    except Exception as exc:  # one sentence, never a traceback, on ssh's stderr
        return fail(f"pair spaces proxy stopped: {type(exc).__name__}: {exc}.")


def _run(argv: list[str]) -> int:
    from pair import config
    from pair.api.endpoints import HOST_KEYS_HEADER, SPACE_TUNNEL, websocket_url
    from pair.api.errors import PairError, answered, login_hint
    from pair.api.grammar import is_space_id

    if len(argv) != 1 or not is_space_id(argv[0]):
        return fail("usage: pair spaces proxy SPACE_ID", "It is ssh's ProxyCommand; use `pair spaces connect`.")
    space_id = argv[0]
    try:
        session = config.load_session()
    except PairError as exc:
        return fail(exc.message, exc.hint)
    if session is None:
        return fail("You are not logged in.", login_hint())

    from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
    from websockets.sync.client import connect

    from pair import tls

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
        answer = answered(exc.response.status_code, exc.response.body or b"", session.url)
        return fail(answer.message, answer.hint)
    except (OSError, TimeoutError, WebSocketException) as exc:
        refused = tls.refusal(exc, session.url)
        if refused is not None:
            return fail(refused.message, refused.hint)
        return fail(
            f"Cannot reach the broker at {session.url} ({type(exc).__name__}).",
            "Check that the broker is running and reachable.",
        )

    _pin_host_keys(space_id, ws.response.headers.get(HOST_KEYS_HEADER) if ws.response else None)
    _widen_pipes()
    ssh_gone = threading.Event()  # ssh closed its end: the stream ended as the person wanted

    def upstream() -> None:
        try:
            while data := os.read(0, CHUNK):
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
            os.write(1, data if isinstance(data, bytes) else data.encode())
    except ConnectionClosed:
        pass
    except OSError:  # ssh stopped reading
        ssh_gone.set()
        ws.close()
    sentence = None if ssh_gone.is_set() else ending(ws.close_code, ws.close_reason or "")
    if sentence:
        say(sentence)
    return 0
