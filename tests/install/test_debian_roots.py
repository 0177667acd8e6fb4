"""Debian roots (tests/install/debian.py) side by side: every root binds the same apt download
cache, so two at once (two `scripts/local-container.sh`, or tests) must take turns with apt."""

from __future__ import annotations

import fcntl
import os
import subprocess
from pathlib import Path

import pytest

from tests.install.debian import debian
from tests.support.container import eventually
from tests.support.tools import need_root, need_tool

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_apt_in_a_root_waits_while_another_root_runs_apt(tmp_path: Path) -> None:
    need_root()
    shared = tmp_path / "apt-archives"
    with debian(tmp_path / "root", apt_archives=shared) as root:
        # What another root's apt-get holds while it downloads: its turn (a flock on the shared
        # folder) and apt's own lock in it (archives/lock, the one a second apt-get fails on at once).
        turn = os.open(shared, os.O_RDONLY)
        with open(shared / "lock", "w") as apt_lock:
            fcntl.flock(turn, fcntl.LOCK_EX)
            fcntl.lockf(apt_lock, fcntl.LOCK_EX)
            assert root.holder is not None
            command = [need_tool("nsenter"), "-t", str(root.holder.pid), "-m", "--"]
            second = subprocess.Popen(
                [*command, "chroot", str(root.root), "apt-get", "clean"],
                env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            # Either it failed on apt's lock (each root on its own), or it waits for its turn.
            waiting = eventually(
                lambda: second.poll() is not None or "flock" in _commands(root.processes()),
                "the second apt-get failed or waits for its turn",
            )
            assert second.poll() is None, (waiting, second.communicate())
            fcntl.lockf(apt_lock, fcntl.LOCK_UN)
        os.close(turn)  # the first root's apt-get is done: the second one's turn
        _, err = second.communicate(timeout=120)
        assert second.returncode == 0, err


def _commands(pids: list[int]) -> list[str]:
    names = []
    for pid in pids:
        try:
            names.append(Path(f"/proc/{pid}/comm").read_text().strip())
        except OSError:
            continue
    return names
