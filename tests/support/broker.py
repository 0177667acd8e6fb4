"""The broker two ways: in-process (Starlette TestClient) and as a real `pair-broker serve`."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from starlette.testclient import TestClient

from broker import accounts
from broker.app import create_app
from broker.context import Context, open_context
from broker.settings import Settings
from tests.support.processes import Output, clean_env, executable, stop

TEST_URL = "http://testserver"
T = TypeVar("T")


class FakeClock:
    """A clock tests move by hand, so expiry is tested without waiting."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class InProcessBroker:
    ctx: Context
    http: TestClient
    clock: FakeClock
    keys: dict[str, str] = field(default_factory=dict)  # email -> auth key

    @property
    def url(self) -> str:
        return TEST_URL

    def add_user(self, email: str, *, admin: bool = False) -> str:
        _, key = self.run(accounts.create_user(self.ctx, email, is_admin=admin))
        self.keys[email] = key
        return key

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run(coro)


@contextmanager
def in_process_broker(data_dir: Path, **settings: object) -> Iterator[InProcessBroker]:
    """The app in TestClient's event loop, with a context the test holds (its clock moved by
    hand). Tests call the broker's functions in loops of their own (`run`): fine for the SQLite
    store, which binds to no loop (an async driver's would need the app's loop)."""
    clock = FakeClock()
    ctx = asyncio.run(open_context(Settings(data_dir=data_dir, public_url=TEST_URL, **settings), create=True))  # type: ignore[arg-type]
    ctx.clock = clock
    app = create_app(ctx=ctx)
    with TestClient(app, base_url=TEST_URL) as http:
        yield InProcessBroker(ctx, http, clock)
    asyncio.run(ctx.database.close())


@dataclass
class RealBroker:
    proc: subprocess.Popen[str]
    url: str
    data_dir: Path
    admin_email: str
    admin_key_file: Path
    output: Output
    database: str | None = None  # a postgresql:// URL, or None for SQLite in the data dir
    env: dict[str, str] = field(default_factory=dict)  # what the server was given (the encryption key)

    def admin(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run `pair-broker ARGS --data-dir DATA_DIR` (and `--database`) next to the live server."""
        database = ("--database", self.database) if self.database else ()
        return subprocess.run(
            [executable("pair-broker"), *args, "--data-dir", str(self.data_dir), *database],
            capture_output=True,
            text=True,
            env=clean_env(**self.env),
            timeout=60,
            check=False,
        )

    def add_user(self, email: str, key_dir: Path) -> Path:
        key_file = key_dir / f"{email.split('@')[0]}.key"
        result = self.admin("users", "add", email, "--key-file", str(key_file))
        assert result.returncode == 0, result.stderr
        return key_file


@contextmanager
def real_broker(
    data_dir: Path,
    *extra_args: str,
    env: dict[str, str] | None = None,
    port: int = 0,
    database: str | None = None,
    fresh: bool | None = None,
) -> Iterator[RealBroker]:
    """`pair-broker serve` on 127.0.0.1 (a free port, or `port` to come back where a stopped one was),
    on the SQLite file in `data_dir` or on `database` (a PostgreSQL URL). `fresh`: whether it
    will make the first admin (default: when there is no database yet; PostgreSQL: yes)."""
    if fresh is None:
        fresh = database is not None or not (data_dir / "broker.db").exists()
    on = ("--database", database) if database else ()
    proc = subprocess.Popen(
        [executable("pair-broker"), "serve", "--port", str(port), "--data-dir", str(data_dir), *on, *extra_args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=clean_env(**(env or {})),
    )
    output = Output(proc)
    try:
        if fresh:
            admin = output.wait_for(r"first admin, (\S+); their auth key is in (\S+) ")
            admin_email, admin_key = admin.group(1), Path(admin.group(2))
        else:
            admin_email, admin_key = "admin@example.com", data_dir / "admin.key"
        listening = output.wait_for(r"listening on (http://\S+)")
        yield RealBroker(proc, listening.group(1), data_dir, admin_email, admin_key, output, database, env or {})
    finally:
        stop(proc)
        output.finish()  # what it said while shutting down
        assert proc.stdout is not None
        proc.stdout.close()
