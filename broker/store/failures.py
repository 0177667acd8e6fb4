"""When the database itself fails: a full disk, a read-only data dir, an I/O error, a lock held
too long. That is the environment's fault, not the request's: every such failure becomes
`StoreUnavailable` (answered 503), and the operator reads one line about it, at most once a
minute, instead of a traceback per request.

SQLite's result codes: https://www.sqlite.org/rescode.html (the primary code is the low byte of
an extended one).
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from broker.store import StoreUnavailable

log = logging.getLogger("pair.broker")

REPEAT_SECONDS = 60.0  # a failure that goes on is reported again this often, with a count
# /healthz's test write while a failure stands: far more than a request writes, so a disk that
# takes it takes requests' writes too. A one-page commit alone fits in the room a failed write's
# rollback frees, and said "ok" while every real write still failed.
PROBE_BYTES = 1 << 20

# primary result code -> (why, what the operator can do); DIR is the database's directory
_CODES: dict[int, tuple[str, str]] = {
    13: ("the disk is full", "Free space on the disk that holds DIR."),  # SQLITE_FULL
    8: (  # SQLITE_READONLY
        "the database or its directory is read-only",
        "Make DIR and its files writable by the broker's user, or pass another --data-dir.",
    ),
    10: ("the disk reported an I/O error", "Check the disk that holds DIR (dmesg, free space)."),  # SQLITE_IOERR
    14: (  # SQLITE_CANTOPEN
        "the database file cannot be opened",
        "Check that DIR exists and is writable by the broker's user.",
    ),
    3: ("access to the database is denied", "Make DIR writable by the broker's user."),  # SQLITE_PERM
    5: (  # SQLITE_BUSY
        "another process holds the database locked",
        "Wait for the other pair-broker command to finish, or stop it.",
    ),
    6: ("another process holds the database locked", "Wait for the other pair-broker command to finish."),
    11: ("the database file is damaged", "Restore DIR/broker.db from a backup."),  # SQLITE_CORRUPT
    26: ("the file is not a pair broker database", "Check --data-dir: DIR/broker.db is something else."),
}
# Python 3.10's sqlite3 errors carry no code: the library's fixed messages (sqlite3ErrStr) then.
_MESSAGES = {
    "database or disk is full": 13,
    "attempt to write a readonly database": 8,
    "disk I/O error": 10,
    "unable to open database file": 14,
    "access permission denied": 3,
    "database is locked": 5,
    "database table is locked": 6,
    "database disk image is malformed": 11,
    "file is not a database": 26,
}


def classify(exc: sqlite3.Error, path: Path) -> StoreUnavailable | None:
    """The StoreUnavailable `exc` means for the database at `path`, or None when it is a
    failure of the statement itself (a constraint, a bug), which stays what it is."""
    if isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError | sqlite3.InterfaceError):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else _MESSAGES.get(str(exc))
    if primary not in _CODES:
        return None
    why, hint = _CODES[primary]
    if primary in (8, 14) and not os.access(path.parent, os.W_OK):  # SQLITE_READONLY, SQLITE_CANTOPEN
        # WAL mode writes beside the database even to read it: a read-only directory is the cause.
        why, hint = "its directory is read-only", _CODES[8][1]
    elif primary in (10, 14) and _full(path.parent):  # SQLITE_IOERR: a write or an mmap ran out of room
        why, hint = _CODES[13]
    return StoreUnavailable(path, why, hint.replace("DIR", str(path.parent)))


def _full(directory: Path) -> bool:
    try:
        st = os.statvfs(directory)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 64 * 1024


class Health:
    """One database's storage failures as the operator sees them: at most one line a minute
    saying it fails (with how many failures went untold), and one saying it works again.
    A full disk flaps (each WAL checkpoint frees room for a few writes), so this keeps the log to
    about two lines a minute however the writes fare. Thread-safe: the checkpointer reports from
    its own thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.failure: StoreUnavailable | None = None  # set while the last write failed
        self._shown: StoreUnavailable | None = None  # the failure the log last said is going on
        self._logged_at = -REPEAT_SECONDS
        self._untold = 0

    @property
    def failing(self) -> bool:
        return self.failure is not None

    def report(self, failure: StoreUnavailable) -> None:
        now = time.monotonic()
        with self._lock:
            self.failure = failure
            other = self._shown is not None and self._shown.why != failure.why
            if now - self._logged_at < REPEAT_SECONDS and not other:
                self._untold += 1
                return
            untold, self._untold, self._shown, self._logged_at = self._untold, 0, failure, now
        also = f" ({untold} more failures since the last report)" if untold else ""
        log.error("cannot use the database %s: %s%s; requests that write get 503.", failure.path, failure.why, also)

    def recovered(self, *, tested: bool = False) -> None:
        """A write committed (`tested`: only /healthz's test write, see room_for_writes)."""
        with self._lock:
            shown, self.failure = self._shown, None
            if shown is None:
                return
            self._shown, self._logged_at = None, time.monotonic()
        if tested:
            log.warning(
                "the database %s took a %d KiB test write (it had failed: %s); requests that write are tried again.",
                shown.path,
                PROBE_BYTES // 1024,
                shown.why,
            )
        else:
            log.warning("the database %s takes writes again (it had failed: %s).", shown.path, shown.why)


def room_for_writes(path: Path, health: Health) -> None:
    """Write, fsync and remove PROBE_BYTES beside the database at `path`: StoreUnavailable
    (reported to `health`) when they do not fit or the directory takes no file. What /healthz
    asks, with a commit, before it says a failing database is ok again."""
    probe = path.parent / f".health-probe-{os.getpid()}"
    try:
        with probe.open("wb") as f:
            f.write(bytes(PROBE_BYTES))
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        primary = {errno.ENOSPC: 13, errno.EDQUOT: 13, errno.EROFS: 8, errno.EACCES: 3, errno.EPERM: 3}.get(
            exc.errno or 0, 10
        )
        why, hint = _CODES[primary]
        failure = StoreUnavailable(path, why, hint.replace("DIR", str(path.parent)))
        health.report(failure)
        raise failure from exc
    finally:
        probe.unlink(missing_ok=True)


_WRITES = ("INSERT", "UPDATE", "DELETE", "COMMIT")


class Connection(sqlite3.Connection):
    """A connection whose storage failures (disk full, read-only, I/O error, a lock held too
    long) are raised as StoreUnavailable and reported to `health`: the one place they are told
    apart from a statement's own errors, for every query the store makes."""

    path: Path
    health: Health
    testing = False  # set around /healthz's test write: its commit is not a request's

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        try:
            cursor = super().execute(sql, parameters)
        except sqlite3.Error as exc:
            self._raise_unavailable(exc)
            raise
        if self.health.failing and not self.in_transaction and sql.startswith(_WRITES) and not self.testing:
            self.health.recovered()  # a request's write was committed
        return cursor

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        try:
            return super().executemany(sql, parameters)
        except sqlite3.Error as exc:
            self._raise_unavailable(exc)
            raise

    def executescript(self, script: str, /) -> sqlite3.Cursor:
        try:
            return super().executescript(script)
        except sqlite3.Error as exc:
            self._raise_unavailable(exc)
            raise

    def rollback_open(self) -> None:
        """Roll back the transaction if one is open. SQLite may have rolled it back itself (a
        full disk), or kept it open after a failed COMMIT; none may be left open."""
        if self.in_transaction:
            self.execute("ROLLBACK")

    def _raise_unavailable(self, exc: sqlite3.Error) -> None:
        failure = classify(exc, self.path)
        if failure is not None:
            self.health.report(failure)
            raise failure from exc


def connect(path: Path, health: Health) -> Connection:
    """A connection to `path` in autocommit mode (transactions are explicit) whose storage
    failures raise StoreUnavailable; opening one that cannot be opened raises it too."""
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, factory=Connection)
    except sqlite3.Error as exc:
        failure = classify(exc, path)
        if failure is None:
            raise
        raise failure from exc
    db.path, db.health = path, health
    return db
