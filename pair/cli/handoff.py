"""`pair spaces connect`'s own end of the SSH stream: the CLI opens the Space's stream through the
broker's relay itself, while ssh starts, and hands ssh a connected socket for it.

ssh closes every inherited descriptor above stderr when it starts, so the socket reaches it the
way ssh_config(5) provides for: `ProxyUseFdpass yes` and a ProxyCommand that passes a descriptor
back over its stdout. That command is pair/fdpass.py under `python -I -S` (no site, no pair),
which fetches the socket from a Unix socket of this process's in a fresh 0700 directory; the
caller is checked to be this user's (SO_PEERCRED) and, on Linux, a descendant of this connect's
ssh. So each connection starts one process that loads nothing, instead of a second `pair` that
imports the WebSocket client and opens the stream only once ssh runs it (docs/performance.md).

The stream itself is pair.tunnel's, as under `pair spaces proxy`: the same refusals, host keys
re-pinned from the broker's acceptance before ssh can read a byte, the same sentence when the
broker ends it. A refusal is raised as the PairError once ssh has stopped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from pair import tunnel
from pair.api.errors import PairError

if TYPE_CHECKING:
    from websockets.sync.client import ClientConnection

    from pair.config import Session

FDPASS = Path(__file__).resolve().parent.parent / "fdpass.py"
SUPPORTED = hasattr(socket, "AF_UNIX") and hasattr(socket, "SCM_RIGHTS") and hasattr(socket, "send_fds")
# What ssh says when its ProxyCommand passes nothing back (sshconnect.c, monitor_fdpass.c): noise
# next to connect's own sentence for why.
SSH_NOISE = (b"proxy dialer did not pass back a connection", b"mm_receive_fd: ")
ACCEPT_POLL = 0.1  # seconds: how often the accepting thread looks whether ssh is gone
CLOSE_WAIT = 3.0  # seconds to let the stream close after ssh (pair.tunnel's close_timeout is 2)
MAX_ANCESTRY = 4  # ssh → the shell it runs ProxyCommand with (usually `exec`s) → fdpass.py


def supported() -> bool:
    """Whether descriptors can be passed here (not on Windows) and fdpass.py can be run."""
    return SUPPORTED and bool(sys.executable) and FDPASS.is_file()


def _runtime_dir() -> str | None:
    """Where the rendezvous socket's directory goes: $XDG_RUNTIME_DIR when usable (per user,
    0700), else the temporary directory. A Unix socket's path must stay under 108 bytes."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime) and len(runtime) < 60:
        return runtime
    return None


class Handoff:
    """One connection's stream and the rendezvous that hands it to ssh. Use as:
    `proxy_command()` for ssh's options, `start(pid)` once ssh runs (the stream opens meanwhile),
    `close()` once it has exited; then `error` holds the broker's refusal, if any."""

    def __init__(self, session: Session, space_id: str) -> None:
        """Makes the rendezvous. Raises OSError when it cannot be made (a directory that cannot
        be written, a path too long for a Unix socket); nothing is left behind then."""
        self.session = session
        self.space_id = space_id
        self.error: PairError | None = None
        self._ssh_pid: int | None = None
        self._closing = threading.Event()
        self._ours: socket.socket | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="pair-", dir=_runtime_dir()))  # mode 0700
        self.path = self._dir / "ssh"
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._listener.bind(str(self.path))
            self._listener.listen(4)
            self._listener.settimeout(ACCEPT_POLL)
        except OSError:
            self._cleanup()
            raise
        self._thread = threading.Thread(target=self._run, name="pair-stream", daemon=True)

    def proxy_command(self) -> tuple[str, ...]:
        """ssh's ProxyCommand (with ProxyUseFdpass): fdpass.py by this interpreter, isolated, in
        a session of its own where setsid(1) is at hand. Ctrl-C is ssh's to handle; in the
        terminal's process group fdpass.py would get it too, and a Python still starting up
        prints a traceback for it. Outside it, fdpass.py ends when this process closes the
        rendezvous (ssh gone: `close`), as it does for every other way a connection ends."""
        setsid = shutil.which("setsid")
        return (*([setsid] if setsid else []), sys.executable, "-I", "-S", str(FDPASS), str(self.path))

    def start(self, ssh_pid: int) -> None:
        """Open the stream (on a thread) for the ssh running as `ssh_pid`, and hand it over."""
        self._ssh_pid = ssh_pid
        self._thread.start()

    def is_noise(self, line: bytes) -> bool:
        """Whether a line of ssh's stderr only repeats, in ssh's words, a refusal connect states."""
        return self.error is not None and any(marker in line for marker in SSH_NOISE)

    def close(self) -> None:
        """After ssh has exited: end the stream (ssh's end is closed, so the copying stops and the
        WebSocket closes with a normal close) and remove the rendezvous."""
        self._closing.set()
        if self._ours is not None:
            with contextlib.suppress(OSError):
                self._ours.shutdown(socket.SHUT_RDWR)
        if self._thread.is_alive():
            self._thread.join(CLOSE_WAIT)
        self._cleanup()

    def _cleanup(self) -> None:
        self._listener.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    # -- the thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        ws: ClientConnection | None = None
        try:
            ws = tunnel.open_stream(self.session, self.space_id)
        except PairError as exc:
            self.error = exc
        except Exception as exc:  # never a traceback from the stream's thread: one sentence
            self.error = PairError(f"Cannot open the SSH stream: {type(exc).__name__}: {exc}.")
        conn = self._accept()
        self._cleanup()  # one connection per rendezvous: nobody else may ask
        if conn is None or ws is None:  # ssh is gone, or nothing to hand it: fdpass.py exits 1
            if conn is not None:
                conn.close()
            if ws is not None:
                ws.close()
            return
        ours, theirs = socket.socketpair()
        try:
            socket.send_fds(conn, [b"\0"], [theirs.fileno()])
        except OSError:
            ours.close()
            ws.close()
            return
        finally:
            theirs.close()
            conn.close()
        self._ours = ours
        if self._closing.is_set():  # ssh exited while the socket was on its way
            with contextlib.suppress(OSError):
                ours.shutdown(socket.SHUT_RDWR)
        sentence = tunnel.carry(ws, ours.recv, ours.sendall)
        if sentence:
            tunnel.say(sentence)
        with contextlib.suppress(OSError):
            ours.shutdown(socket.SHUT_RDWR)  # ssh reads the end of the connection

    def _accept(self) -> socket.socket | None:
        """The connection of this connect's fdpass.py, or None once ssh has exited without one."""
        while not self._closing.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return None
            conn.settimeout(None)
            if self._ssh_pid is not None and peer_is_of(conn, self._ssh_pid):
                return conn
            conn.close()  # someone else: wait on for ssh's own
        return None


def peer_is_of(conn: socket.socket, ssh_pid: int) -> bool:
    """Whether the process at the other end of the Unix socket `conn` is this user's and, on
    Linux (SO_PEERCRED, unix(7)), the ssh running as `ssh_pid` or started by it. Elsewhere the
    rendezvous' 0700 directory is the check."""
    peercred = getattr(socket, "SO_PEERCRED", None)
    if peercred is None:
        return True
    size = struct.calcsize("3i")
    pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, peercred, size))
    return uid == os.geteuid() and _descends_from(pid, ssh_pid)


def _descends_from(pid: int, ancestor: int) -> bool:
    """Whether process `pid` is `ancestor` or started by it, within MAX_ANCESTRY generations (/proc)."""
    for _ in range(MAX_ANCESTRY):
        if pid == ancestor:
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the command name is the parent's
        if pid <= 1:
            return False
    return pid == ancestor
