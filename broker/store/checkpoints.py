"""SQLite's WAL checkpoints, moved off the event loop.

By default the connection that commits the 1,000th WAL page copies the WAL back into the
database and fsyncs it, inside that COMMIT: on the broker that is a request handler, and the
event loop stalls for every request in flight (docs/performance.md). Instead this thread runs a
PASSIVE checkpoint (it never waits for, or blocks, readers and writers) on its own connection
every second; sqlite3 releases the GIL while SQLite works, so the copy and fsync run beside the
loop.

The broker's own connection keeps a backstop, a checkpoint past WAL_BACKSTOP_PAGES: SQLite
starts the WAL over from its beginning only once a checkpoint has caught up with the newest
commit, and under sustained writes one from another connection never does (the WAL grew by
750 MB in six seconds of token issuance without it). Under ordinary load the thread's
checkpoints catch up and the backstop never fires. Other processes (`pair-broker users …`) keep
SQLite's default.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

from broker.store import StoreUnavailable
from broker.store.failures import Health, connect

INTERVAL = 1.0  # seconds
WAL_BACKSTOP_PAGES = 10_000  # ~40 MB of WAL


class Checkpointer:
    def __init__(self, path: Path, health: Health, interval: float = INTERVAL) -> None:
        self._path = path
        self._health = health
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoints", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        db = connect(self._path, self._health)
        try:
            db.execute("PRAGMA busy_timeout=5000")
            while not self._stop.wait(self._interval):
                # A full disk is reported (rate-limited) by the connection; the next round retries.
                with contextlib.suppress(StoreUnavailable):
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            db.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
