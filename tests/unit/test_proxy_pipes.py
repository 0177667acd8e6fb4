"""`pair spaces proxy` widens the pipes ssh gives it, so the relay carries fewer, larger frames."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys

from pair import proxy


def test_the_proxy_widens_both_of_its_pipes_to_a_mebibyte() -> None:
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    try:
        assert fcntl.fcntl(stdin_r, fcntl.F_GETPIPE_SZ) < proxy.PIPE_SIZE
        subprocess.run(
            [sys.executable, "-c", "from pair.proxy import _widen_pipes; _widen_pipes()"],
            stdin=stdin_r,
            stdout=stdout_w,
            check=True,
            timeout=30,
        )
        assert fcntl.fcntl(stdin_w, fcntl.F_GETPIPE_SZ) == proxy.PIPE_SIZE
        assert fcntl.fcntl(stdout_r, fcntl.F_GETPIPE_SZ) == proxy.PIPE_SIZE
    finally:
        for fd in (stdin_r, stdin_w, stdout_r, stdout_w):
            os.close(fd)


def test_a_terminal_or_file_is_left_alone() -> None:
    # Not a pipe: F_SETPIPE_SZ fails, and the proxy carries on.
    result = subprocess.run(
        [sys.executable, "-c", "from pair.proxy import _widen_pipes; _widen_pipes(); print('ok')"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert result.stdout == "ok\n"
