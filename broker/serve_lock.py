"""One `pair-broker serve` per data directory.

Connected agents, open streams and the heartbeat memo live in the serving process (broker.hub,
Context.seen), so a second broker on the same SQLite file would split the containers and
teammates between two processes that cannot reach each other's. `serve` therefore holds an
exclusive flock(2) on `DATA_DIR/serve.lock` for as long as it runs; the kernel releases it when
the process ends, however it ends, so a stale file never blocks a restart. The file records the
holder's pid and URL for the refusal message. Admin commands (`pair-broker users …`, `keys …`,
`audit`) are short separate processes that share the database through SQLite's own locking and
never take this lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

LOCK_NAME = "serve.lock"


@dataclass(frozen=True)
class Holder:
    """Who holds the lock, as far as its file says (pid 0 and url "" when it has not said yet)."""

    pid: int
    url: str


class DataDirBusy(Exception):
    def __init__(self, data_dir: Path, holder: Holder) -> None:
        super().__init__(f"{data_dir} is served by pid {holder.pid}")
        self.data_dir = data_dir
        self.holder = holder


class ServeLock:
    """The held lock; `record` writes the URL once the socket is bound. Released by `release`
    or when the process exits."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    def record(self, url: str) -> None:
        """Write the holder's pid and URL into the lock file, for a second `serve` to name."""
        data = json.dumps({"pid": os.getpid(), "url": url}).encode() + b"\n"
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def acquire(data_dir: Path) -> ServeLock:
    """Create `data_dir` (0700) if needed and lock it for this process.

    Raises DataDirBusy (naming the holder's pid and URL) if another process holds it, and
    OSError if the directory or the lock file cannot be created.
    """
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = data_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise DataDirBusy(data_dir, holder) from None
    except BaseException:
        os.close(fd)
        raise
    lock = ServeLock(path, fd)
    lock.record("")
    return lock


def _holder(fd: int) -> Holder:
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        data = json.loads(os.pread(fd, 4096, 0))
        return Holder(int(data["pid"]), str(data.get("url") or ""))
    return Holder(0, "")  # between its flock and its first write, or a damaged file
