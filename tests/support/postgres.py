"""A real PostgreSQL server for the tests: Debian's `postgresql` package, its own data directory
in a temporary directory and a free port on 127.0.0.1, started once per test session; each test
gets a fresh database copied from a migrated template (CREATE DATABASE … TEMPLATE: 0.2–0.6 s
here), made ahead by a background thread while the tests before it run, so a test seldom waits.

initdb refuses to run as root, so as root the server runs as the `postgres` user, in a directory
that user can reach (not under a 0700 temporary directory). fsync is off: the tests never survive a crash.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import queue
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from tests.support.tools import need_tool

TEMPLATE = "pair_template"
AHEAD = 2  # migrated databases kept ready


def _binaries() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        need_tool("initdb")  # skips locally, fails under CI=true
        found = [str(shutil.which("initdb"))]
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One server; `create_database()` hands out fresh, migrated databases by URL."""

    def __init__(self, root: Path, port: int, options: str, run_as: dict[str, Any]) -> None:
        self.root = root
        self.port = port
        self._options = options  # the server's own (`pg_ctl -o`): its port, socket dir, settings
        self._run_as = run_as
        self._count = 0
        self._lock = threading.Lock()
        self._ready: queue.Queue[str] = queue.Queue(maxsize=AHEAD)
        self._stopping = threading.Event()
        self._failure: BaseException | None = None
        self._maker = threading.Thread(target=self._make_ahead, name="postgres-databases", daemon=True)

    @property
    def admin_url(self) -> str:
        return self.url("postgres")

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, *, migrated: bool = True) -> str:
        """A new database's URL: a copy of the migrated template, or empty."""
        if not migrated:
            return self.url(self._copy("template0"))
        while True:
            if self._failure is not None:
                raise RuntimeError("making test databases failed") from self._failure
            try:
                return self.url(self._ready.get(timeout=1))
            except queue.Empty:
                continue

    def _copy(self, template: str) -> str:
        with self._lock:
            self._count += 1
            name = f"test_{os.getpid()}_{self._count}"
        with psycopg.connect(self.admin_url, autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return name

    def start_making(self) -> None:
        self._maker.start()

    def stop_making(self) -> None:
        self._stopping.set()
        if self._maker.is_alive():
            self._maker.join()

    def _make_ahead(self) -> None:
        try:
            while not self._stopping.is_set():
                name = self._copy(TEMPLATE)
                while not self._stopping.is_set():
                    try:
                        self._ready.put(name, timeout=0.2)
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:  # told to the next test that asks, not lost in a thread
            self._failure = exc

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.admin_url, autocommit=True) as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def rows(self, url: str, sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(url, autocommit=True) as db:
            return list(db.execute(sql).fetchall())

    def execute(self, url: str, sql: str) -> None:
        with psycopg.connect(url, autocommit=True) as db:
            db.execute(sql)

    def restart(self) -> None:
        """Restart the server (`fast`: every connection cut, what was committed kept; this
        server runs without fsync and synchronous commits, so a crash would lose recent
        commits) on the same port: pg_ctl reuses the options it was started with. For a server
        of a test's own: the session's is shared."""
        self._pg_ctl("-m", "fast", "-w", "-t", "60", "restart")

    def stop(self) -> None:
        """Stop the server (`fast`), e.g. to start a broker before it. Stop making databases
        first (`stop_making`). For a server of a test's own."""
        self._pg_ctl("-m", "fast", "-w", "-t", "60", "stop")

    def start(self) -> None:
        """Start the server stopped by `stop`, on the same port, and wait until it takes connections."""
        self._pg_ctl("-o", self._options, "-w", "-t", "60", "start")

    def _pg_ctl(self, *args: str) -> None:
        env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C.UTF-8", "TZ": "UTC"}
        data, log = self.root / "data", self.root / "server.log"
        subprocess.run(
            [_binaries() / "pg_ctl", "-D", data, "-l", log, *args],
            check=True,
            capture_output=True,
            env=env,
            cwd=self.root,
            **self._run_as,
        )


@contextlib.contextmanager
def postgres_server(*, durable: bool = False) -> Iterator[PostgresServer]:
    """A server for the tests: fsync and full-page writes off, as nothing survives a crash. With
    `durable` (the benchmarks) fsync and full-page writes stay on as in production, and only
    `synchronous_commit` is off: a commit is answered before its WAL reaches the disk, as pair's
    SQLite store does (WAL, `synchronous=NORMAL`), so the two compare like for like."""
    bin_dir = _binaries()
    run_as: dict[str, Any] = {}
    root = Path(tempfile.mkdtemp(prefix="pair-postgres-"))
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        run_as = {"user": pw.pw_uid, "group": pw.pw_gid}
        root.chmod(0o755)  # mkdtemp's 0700 would keep the postgres user out
        os.chown(root, pw.pw_uid, pw.pw_gid)
    data, log = root / "data", root / "server.log"
    env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C.UTF-8", "TZ": "UTC"}
    try:
        subprocess.run(
            [bin_dir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
            check=True,
            capture_output=True,
            env=env,
            cwd=root,
            **run_as,
        )
        server = None
        for _ in range(5):  # another process may take the free port between choosing and binding it
            port = _free_port()
            unsafe = "" if durable else " -c fsync=off -c full_page_writes=off"
            options = (
                f"-p {port} -k {root} -c listen_addresses=127.0.0.1{unsafe}"
                " -c synchronous_commit=off -c max_connections=200"
            )
            started = subprocess.run(
                [bin_dir / "pg_ctl", "-D", data, "-l", log, "-o", options, "-w", "-t", "60", "start"],
                capture_output=True,
                text=True,
                env=env,
                cwd=root,
                **run_as,
            )
            if started.returncode == 0:
                server = PostgresServer(root, port, options, run_as)
                break
        if server is None:
            raise RuntimeError(f"PostgreSQL did not start: {log.read_text(errors='replace')[-2000:]}")
        try:
            _make_template(server)
            server.start_making()
            try:
                yield server
            finally:
                server.stop_making()
        finally:
            subprocess.run(
                [bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"],
                capture_output=True,
                env=env,
                cwd=root,
                **run_as,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _make_template(server: PostgresServer, name: str = TEMPLATE) -> None:
    """A database with every migration applied, which each test's database copies.

    The store migrates in an event loop of its own, on a thread of its own: the server starts on
    first use, and that may be from inside a test's running loop (a coroutine asking for the
    `postgres` fixture), where `asyncio.run` refuses to start another."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from broker.store.postgres import PostgresStore

    with psycopg.connect(server.admin_url, autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{name}"')

    async def migrate() -> None:
        store = await PostgresStore.open(server.url(name), pool_max=1)
        await store.close()

    with ThreadPoolExecutor(1, thread_name_prefix="postgres-template") as pool:
        pool.submit(asyncio.run, migrate()).result()
