"""ssh's ProxyCommand under `pair spaces connect` (with `ProxyUseFdpass yes`, ssh_config(5)).

`pair spaces connect` opens the Space's SSH stream itself while ssh starts, and holds it; this
program fetches the connected socket that stands for it from connect's private Unix socket (the
one argument, in a 0700 directory) and passes it to ssh over its stdout (SCM_RIGHTS, unix(7)),
then exits: ssh reads and writes that socket itself, and no process starts per connection but this
one, which loads nothing (run as `python -I -S fdpass.py SOCKET`: no site, no pair, only built-in
modules, so it starts in the time Python itself takes).

When connect has no socket to give (the broker refused the stream), it closes the connection and
this program exits 1 without a word: ssh stops ("proxy dialer did not pass back a connection") and
connect says why, as every pair command does.
"""

import _socket
import sys

INT_SIZE = 4  # a file descriptor in SCM_RIGHTS is a C int


def receive_fd(path: str) -> int | None:
    """The descriptor `pair spaces connect` sends on the Unix socket at `path`, or None (closed,
    refused, or no descriptor in the message)."""
    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        conn.connect(path)
        _data, ancillary, _flags, _address = conn.recvmsg(1, _socket.CMSG_SPACE(INT_SIZE))
    except OSError:
        return None
    finally:
        conn.close()
    for level, kind, data in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS and len(data) >= INT_SIZE:
            return int.from_bytes(data[:INT_SIZE], sys.byteorder)
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -I -S fdpass.py SOCKET (ssh's ProxyCommand under `pair spaces connect`)\n")
        return 2
    try:
        fd = receive_fd(argv[0])
        if fd is None:
            return 1
        to_ssh = _socket.socket(fileno=1)  # with ProxyUseFdpass, ssh's end of a socketpair
        try:
            to_ssh.sendmsg([b"\0"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fd.to_bytes(INT_SIZE, sys.byteorder))])
        finally:
            to_ssh.detach()
    except OSError:
        return 1
    except KeyboardInterrupt:  # Ctrl-C, where setsid(1) could not keep it away: ssh decides what it means
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
