"""`pair spaces proxy SPACE_ID`: ssh's ProxyCommand. Connects stdin/stdout to a tunnel through
the broker's relay. ssh starts it for every connection, so it loads only what it needs (no CLI
framework, no HTTP client) and copies with two threads and blocking I/O."""

from __future__ import annotations

import os
import signal
import sys

from pair.printable import printable

# ssh talks to a ProxyCommand through pipes, 64 KiB by default on Linux. Larger pipes mean fewer,
# larger WebSocket frames through the relay (pair.tunnel.CHUNK).
PIPE_SIZE = 1024 * 1024  # Linux's default limit for unprivileged users (/proc/sys/fs/pipe-max-size)


def fail(message: str, hint: str = "") -> int:
    sys.stderr.write(f"pair: error: {printable(message)}\n" + (f"pair: hint: {printable(hint)}\n" if hint else ""))
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
    # Ctrl-C reaches ssh and this process alike (one process group): ssh decides what it means
    # (a remote shell gets it, `ssh -N` exits and closes our pipes), so it is no reason to stop
    # here, or to print a traceback. SIGHUP (ssh exiting) and SIGTERM end the process quietly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return _run(argv)
    except Exception as exc:  # one sentence, never a traceback, on ssh's stderr
        return fail(f"pair spaces proxy stopped: {type(exc).__name__}: {exc}.")


def _run(argv: list[str]) -> int:
    from pair import config, tunnel
    from pair.api.errors import PairError, login_hint
    from pair.api.grammar import is_space_id

    if len(argv) != 1 or not is_space_id(argv[0]):
        return fail("usage: pair spaces proxy SPACE_ID", "It is ssh's ProxyCommand; use `pair spaces connect`.")
    try:
        session = config.load_session()
        if session is None:
            return fail("You are not logged in.", login_hint())
        ws = tunnel.open_stream(session, argv[0])
    except PairError as exc:
        return fail(exc.message, exc.hint)
    _widen_pipes()
    sentence = tunnel.carry(ws, lambda n: os.read(0, n), lambda data: os.write(1, data))
    if sentence:
        tunnel.say(sentence)
    return 0
