"""The store tests' backends and rows: a database per test for each backend the contract suite
runs against, opened in the test's own event loop.

A backend adds a class here with the same three methods, a branch in `backend`, and one name
in tests/unit/test_store_contract.py's BACKENDS.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import pytest

from broker.store import SessionRecord, SpaceRecord, SshKeyRecord, Store, StreamRecord, TokenRecord, UserRecord
from broker.store.backends import open_store
from pair.api.models import StreamKind
from tests.support.postgres import PostgresServer

NOW = 1_800_000_000


class Backend(Protocol):
    name: str

    async def open(self) -> Store:
        """A store on this test's database; each call another connection (another broker
        process, as far as the database can tell)."""
        ...

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """What `sql` (portable SQL, no parameters) selects, read from outside the store."""
        ...

    def execute(self, sql: str) -> None:
        """Run `sql` (portable SQL, no parameters) from outside the store, committed at once:
        another process's write."""
        ...


class SqliteBackend:
    name = "sqlite"

    def __init__(self, directory: Path) -> None:
        self.path = directory / "broker.db"

    async def open(self) -> Store:
        return await open_store(self.path)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(self.path)
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()

    def execute(self, sql: str) -> None:
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            db.execute(sql)
        finally:
            db.close()


class PostgresBackend:
    """A fresh database on the session's PostgreSQL server (tests/support/postgres.py)."""

    name = "postgresql"

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.url = server.create_database()

    async def open(self) -> Store:
        return await open_store(self.url)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self.server.rows(self.url, sql)

    def execute(self, sql: str) -> None:
        self.server.execute(self.url, sql)

    def drop(self) -> None:
        self.server.drop_database(self.url)


@contextmanager
def backend(request: pytest.FixtureRequest, name: str, directory: Path) -> Iterator[Backend]:
    """The backend `name` for one test: SQLite in `directory`, or a fresh PostgreSQL database
    (the session's server starts on first use: the `postgres` fixture)."""
    if name == "sqlite":
        yield SqliteBackend(directory)
        return
    assert name == "postgresql", name
    pg = PostgresBackend(request.getfixturevalue("postgres"))
    try:
        yield pg
    finally:
        pg.drop()


# -- rows ----------------------------------------------------------------------------------------


def user(uid: str, email: str = "", *, admin: bool = False) -> UserRecord:
    return UserRecord(id=uid, email=email or f"{uid}@example.com", is_admin=admin, created_at=NOW)


def stream(sid: str, space_id: str, uid: str, kind: StreamKind = "ssh", *, at: int = NOW) -> StreamRecord:
    """A row of the connection log: `uid`'s stream of `kind` into `space_id`, opened `at`."""
    return StreamRecord(sid, space_id, uid, f"{uid.removeprefix('u_')}@example.com", "192.0.2.1", at, kind=kind)


def space(sid: str, owner: str, name: str, *, at: int = NOW) -> SpaceRecord:
    return SpaceRecord(
        id=sid,
        owner_id=owner,
        owner_email="",
        name=name,
        state="created",
        created_at=at,
        updated_at=at,
        last_seen_at=None,
        deleted_at=None,
        instance_id=None,
        facts=None,
    )


def session(sid: str, uid: str, *, expires_at: int = NOW + 3600) -> SessionRecord:
    return SessionRecord(
        id=sid, user_id=uid, kind="cli", client="test", created_at=NOW, expires_at=expires_at, last_used_at=NOW
    )


def ssh_key(kid: str, uid: str) -> SshKeyRecord:
    return SshKeyRecord(
        id=kid,
        user_id=uid,
        fingerprint=f"SHA256:{kid}",
        key_type="ssh-ed25519",
        bits=256,
        public_key=f"ssh-ed25519 AAAA{kid}",
        comment="",
        created_at=NOW,
    )


def token(jti: str, space_id: str) -> TokenRecord:
    return TokenRecord(
        jti=jti,
        space_id=space_id,
        issued_by="u_alice",
        issued_at=NOW,
        expires_at=NOW + 3600,
        used_instance_id=None,
        used_at=None,
        revoked_at=None,
    )


async def add_people(store: Store) -> None:
    """alice, bob and carol (u_alice, …), with auth key hashes ak_<name>."""
    for name in ("alice", "bob", "carol"):
        await store.create_user(user(f"u_{name}", f"{name}@example.com"), f"ak_{name}")
