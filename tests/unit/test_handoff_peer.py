"""`pair spaces connect` hands its stream only to the fdpass.py its own ssh started
(pair.cli.handoff.peer_is_of): a process of the same user outside that ssh gets nothing. A
rendezvous that cannot be made fails whole (connect then uses `pair spaces proxy`)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pair.cli.handoff import Handoff, peer_is_of
from pair.config import Session

linux_only = pytest.mark.skipif(not hasattr(socket, "SO_PEERCRED"), reason="SO_PEERCRED is Linux's")

# Connects to the socket named by argv[1] and waits until its stdin closes.
CLIENT = "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); sys.stdin.read()"


@contextmanager
def rendezvous(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path = str(tmp_path / "s")
    listener.bind(path)
    listener.listen(1)
    listener.settimeout(30)
    try:
        yield listener, path
    finally:
        listener.close()


@contextmanager
def started(argv: list[str]) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)


@linux_only
def test_the_process_itself_and_its_descendants_are_its_own(tmp_path: Path) -> None:
    with rendezvous(tmp_path) as (listener, path):
        with started([sys.executable, "-c", CLIENT, path]) as child:
            conn, _ = listener.accept()
            with conn:
                assert peer_is_of(conn, child.pid)
        # through a shell that forks rather than execs (`; true`), as ssh's $SHELL -c might
        with started(["/bin/sh", "-c", f'"{sys.executable}" -c "{CLIENT}" {path}; true']) as shell:
            conn, _ = listener.accept()
            with conn:
                assert peer_is_of(conn, shell.pid)


@linux_only
def test_a_process_outside_that_ssh_is_refused(tmp_path: Path) -> None:
    with (
        rendezvous(tmp_path) as (listener, path),
        started([sys.executable, "-c", "import sys; sys.stdin.read()"]) as ssh,  # stands in for ssh
        started([sys.executable, "-c", CLIENT, path]),  # same user, but not ssh's
    ):
        conn, _ = listener.accept()
        with conn:
            assert not peer_is_of(conn, ssh.pid)


def test_a_rendezvous_that_cannot_be_made_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deep = tmp_path / ("d" * 100)  # a Unix socket's path holds 108 bytes at most
    deep.mkdir()
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr("tempfile.tempdir", str(deep))
    with pytest.raises(OSError, match="too long"):
        Handoff(Session("http://127.0.0.1:9", "a@example.com", "token", "never"), "sp_abc")
    assert list(deep.iterdir()) == []
