"""The embedded default store: one SQLite file in WAL mode, queried inline from the event loop.

Every call runs to completion without awaiting, so each is atomic with respect to the other
requests this process serves; several processes share the file through WAL and busy_timeout.
A transaction (`transaction()`) is BEGIN IMMEDIATE on the one connection: it takes the write
lock at once, so two processes never deadlock upgrading a read, and it holds the connection
until its block ends, so the store refuses calls made on itself meanwhile (they would join the
transaction) and a failed statement aborts it, as the contract says (broker/store/__init__.py).

The reads every request repeats (an agent's credential, a session, a user's Spaces and their
shares) are answered from memory until the database changes, and only then: this connection's
writes move `total_changes`, other processes' commits (`pair-broker users …`) move
`PRAGMA data_version`. So a memo is never stale, and a steady heartbeat or a polling web page
costs one PRAGMA instead of its queries (docs/performance.md). Within one step of the event loop
(the requests it runs between two waits for I/O) data_version is read once: another process's
commit is seen from the next step on, as if it had landed a few microseconds later.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

from broker.store import (
    AccessRequestRecord,
    AgentChannelRecord,
    AuditRecord,
    AuthorizedKeyRow,
    Conflict,
    DesiredState,
    GroupRecord,
    Limits,
    PortRecord,
    ReplicaRecord,
    SealedKeyRecord,
    SessionRecord,
    SpaceKeyRecord,
    SpaceRecord,
    SshKeyRecord,
    StoreError,
    StoreUnavailable,
    StreamRecord,
    TemplateRecord,
    TokenRecord,
    TransactionAborted,
    Usage,
    UserRecord,
    migrations,
)
from broker.store.checkpoints import WAL_BACKSTOP_PAGES, Checkpointer
from broker.store.failures import Connection, Health, connect, room_for_writes
from pair.api.models import SpaceState

DIALECT = "sqlite"
_SPACE_COLUMNS = """s.id, s.owner_id, u.email, s.name, s.state, s.created_at, s.updated_at,
    s.last_seen_at, s.deleted_at, s.instance_id, s.facts, s.desired_state, s.ssh, s.space_key_id, s.container_name,
    s.template, s.compute_units, s.storage_units"""
_REQUEST_COLUMNS = """id, email, message, client_address, state, created_at, expires_at, decided_at, decided_by,
    user_id, space_id, last_polled_at"""
_TEMPLATE_COLUMNS = "name, description, compute_units, storage_units, is_default, created_at"
_COMPUTE_STATES = "('starting', 'running')"  # the states that use compute units (seed 001's lifecycle)
_SPACE_FROM = "spaces s JOIN users u ON u.id = s.owner_id"
_REPLICA_COLUMNS = "id, address, started_at, seen_at"
_PORT_COLUMNS = "p.space_id, p.port, p.level, p.label, p.address, p.created_at, p.updated_at"
_KEY_COLUMNS = "id, owner_id, name, key_hash, created_at, expires_at, revoked_at, uses, last_used_at, template"
_MEMO_LIMIT = 20_000  # entries; past it the memo starts over rather than grow without bound
# Extended result codes of a uniqueness failure (https://www.sqlite.org/rescode.html).
_UNIQUE_CODES = {2067, 1555}  # SQLITE_CONSTRAINT_UNIQUE, SQLITE_CONSTRAINT_PRIMARYKEY
OUTSIDE = (
    "The store was called while a transaction is open on its connection; "
    "call the transaction (or ctx.transaction()'s context) instead."
)

T = TypeVar("T")


def statements(script: str) -> Iterator[str]:
    """The SQL statements of `script`, one at a time (`sqlite3.complete_statement` decides where
    one ends, so semicolons in strings, comments and trigger bodies stay where they are)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""
    rest = "\n".join(ln for ln in pending.splitlines() if ln.strip() and not ln.strip().startswith("--"))
    if rest:
        raise StoreError(f"An SQL statement does not end: {rest[:80]!r}")


def migrate(db: sqlite3.Connection) -> list[str]:
    """Bring the schema of `db` (a connection in autocommit mode) up to date, each migration and
    its record in one transaction; the names of the migrations applied. StoreError for a
    database from a newer release, or a migration that fails (nothing of it stays)."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations"
        " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
    )
    version = int(db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] or 0)
    applied = []
    for migration in migrations.pending(version, DIALECT):
        try:
            db.execute("BEGIN IMMEDIATE")
            for statement in statements(migration.sql):
                db.execute(statement)
            db.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, int(time.time())),
            )
            db.execute("COMMIT")
        except BaseException as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"Migration {migration.name} failed: {exc}") from exc
            raise
        applied.append(migration.name)
    return applied


def _conflict(exc: sqlite3.IntegrityError, rule: str, message: str) -> Conflict:
    """The Conflict `exc` is if it broke a uniqueness rule; `exc` itself otherwise (a foreign
    key naming no row is a bug upstream, not a clash), to be raised by the caller."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.10's sqlite3 has none: SQLite's fixed message
    unique = code in _UNIQUE_CODES if isinstance(code, int) else str(exc).startswith("UNIQUE constraint failed")
    if not unique:
        raise exc
    return Conflict(rule, message)


class _Queries:
    """Every query of the contract, on one connection. How statements run is the subclasses':
    the store commits each call on its own and remembers repeated reads; a transaction groups
    calls and is aborted by the first that fails."""

    _db: Connection

    def _write(self) -> contextlib.AbstractContextManager[Connection]:
        """Several statements as one write."""
        raise NotImplementedError

    def _run(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        raise NotImplementedError

    def _one(self, sql: str, *args: Any) -> Any:
        return self._run(sql, args).fetchone()

    def _all(self, sql: str, *args: Any) -> list[Any]:
        return self._run(sql, args).fetchall()

    def _memoized(self, key: tuple[str, ...], load: Callable[[], T]) -> T:
        return load()

    # -- users --------------------------------------------------------------------------------

    async def create_user(self, user: UserRecord, auth_key_hash: str) -> None:
        try:
            with self._write() as db:
                db.execute(
                    "INSERT INTO users (id, email, is_admin, auth_key_hash, created_at) VALUES (?, ?, ?, ?, ?)",
                    (user.id, user.email, int(user.is_admin), auth_key_hash, user.created_at),
                )
        except sqlite3.IntegrityError as exc:
            raise _conflict(exc, "users.email", f"user {user.email} exists") from exc

    async def user_by_email(self, email: str) -> UserRecord | None:
        row = self._one("SELECT id, email, is_admin, created_at FROM users WHERE email = ?", email)
        return _user(row) if row else None

    async def user_by_auth_key(self, auth_key_hash: str) -> UserRecord | None:
        row = self._one("SELECT id, email, is_admin, created_at FROM users WHERE auth_key_hash = ?", auth_key_hash)
        return _user(row) if row else None

    async def users(self) -> list[UserRecord]:
        return [_user(r) for r in self._all("SELECT id, email, is_admin, created_at FROM users ORDER BY email")]

    async def set_auth_key(self, user_id: str, auth_key_hash: str, now: int) -> None:
        with self._write() as db:
            db.execute("UPDATE users SET auth_key_hash = ? WHERE id = ?", (auth_key_hash, user_id))
            db.execute("UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL", (now, user_id))

    async def remove_user(self, user_id: str, now: int) -> list[str]:
        with self._write() as db:
            owned = [
                r[0]
                for r in db.execute(
                    "SELECT id FROM spaces WHERE owner_id = ? AND deleted_at IS NULL ORDER BY created_at, name, id",
                    (user_id,),
                )
            ]
            db.execute("DELETE FROM users WHERE id = ?", (user_id,))
        return owned

    # -- sessions -----------------------------------------------------------------------------

    async def create_session(self, session: SessionRecord, token_hash: str) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO sessions (id, user_id, token_hash, kind, client, created_at, expires_at, last_used_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    session.id,
                    session.user_id,
                    token_hash,
                    session.kind,
                    session.client,
                    session.created_at,
                    session.expires_at,
                    session.last_used_at,
                ),
            )

    async def session_by_token(self, token_hash: str, now: int) -> tuple[SessionRecord, UserRecord] | None:
        found = self._memoized(("session", token_hash), lambda: self._session_by_token(token_hash))
        return found if found is not None and found[0].expires_at > now else None

    def _session_by_token(self, token_hash: str) -> tuple[SessionRecord, UserRecord] | None:
        row = self._one(
            "SELECT s.id, s.user_id, s.kind, s.client, s.created_at, s.expires_at, s.last_used_at,"
            " u.id, u.email, u.is_admin, u.created_at"
            " FROM sessions s JOIN users u ON u.id = s.user_id"
            " WHERE s.token_hash = ? AND s.revoked_at IS NULL",
            token_hash,
        )
        if row is None:
            return None
        return SessionRecord(*row[:7]), _user(row[7:])

    async def touch_session(self, session_id: str, now: int) -> None:
        self._run("UPDATE sessions SET last_used_at = ? WHERE id = ?", (now, session_id))

    async def session_live(self, session_id: str, user_id: str, now: int) -> bool:
        """Whether session `session_id` of `user_id` is neither revoked (sign-out, a new auth key)
        nor expired nor gone with its user; memoized like `session_by_token`, so an app proxy
        asking on every request and every second of an open WebSocket costs a dict lookup."""
        expires_at = self._memoized(
            ("session-id", session_id, user_id), lambda: self._session_expiry(session_id, user_id)
        )
        return expires_at is not None and expires_at > now

    def _session_expiry(self, session_id: str, user_id: str) -> int | None:
        row = self._one(
            "SELECT expires_at FROM sessions WHERE id = ? AND user_id = ? AND revoked_at IS NULL", session_id, user_id
        )
        return None if row is None else int(row[0])

    async def revoke_session(self, session_id: str, now: int) -> None:
        self._run("UPDATE sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now, session_id))

    # -- one-time web sign-in links -----------------------------------------------------------

    async def add_web_link(self, token_hash: str, user_id: str, now: int, expires_at: int) -> None:
        with self._write() as db:
            db.execute("DELETE FROM web_links WHERE expires_at < ?", (now - 86400,))  # keep the table small
            db.execute(
                "INSERT INTO web_links (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
                (token_hash, user_id, now, expires_at),
            )

    async def redeem_web_link(self, token_hash: str, now: int) -> UserRecord | None:
        """Spend the link: only the first call within its lifetime gets the user (one UPDATE, so
        two broker processes cannot both spend it)."""
        with self._write() as db:
            row = db.execute(
                "UPDATE web_links SET used_at = ? WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?"
                " RETURNING user_id",
                (now, token_hash, now),
            ).fetchone()
            found = (
                db.execute("SELECT id, email, is_admin, created_at FROM users WHERE id = ?", (row[0],)).fetchone()
                if row
                else None
            )
        return _user(found) if found else None

    # -- SSH keys -----------------------------------------------------------------------------

    async def add_ssh_key(self, key: SshKeyRecord) -> None:
        try:
            with self._write() as db:
                db.execute(
                    "INSERT INTO ssh_keys (id, user_id, fingerprint, key_type, bits, public_key, comment,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        key.id,
                        key.user_id,
                        key.fingerprint,
                        key.key_type,
                        key.bits,
                        key.public_key,
                        key.comment,
                        key.created_at,
                    ),
                )
        except sqlite3.IntegrityError as exc:
            raise _conflict(exc, "ssh_keys.fingerprint", f"key {key.fingerprint} exists") from exc

    async def ssh_keys(self, user_id: str) -> list[SshKeyRecord]:
        rows = self._all(
            "SELECT id, user_id, fingerprint, key_type, bits, public_key, comment, created_at"
            " FROM ssh_keys WHERE user_id = ? ORDER BY created_at, comment, fingerprint",
            user_id,
        )
        return [SshKeyRecord(*r) for r in rows]

    async def remove_ssh_key(self, user_id: str, key_id: str) -> bool:
        cur = self._run("DELETE FROM ssh_keys WHERE id = ? AND user_id = ?", (key_id, user_id))
        return cur.rowcount > 0

    # -- Spaces -------------------------------------------------------------------------------

    async def create_space(self, space: SpaceRecord, share_user_ids: list[str]) -> None:
        try:
            with self._write() as db:
                db.execute(
                    "INSERT INTO spaces (id, owner_id, name, state, created_at, updated_at, space_key_id,"
                    " container_name, template, compute_units, storage_units) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        space.id,
                        space.owner_id,
                        space.name,
                        space.state,
                        space.created_at,
                        space.updated_at,
                        space.space_key_id,
                        space.container_name,
                        space.template,
                        space.compute_units,
                        space.storage_units,
                    ),
                )
                db.executemany(
                    "INSERT INTO space_shares (space_id, user_id, created_at) VALUES (?, ?, ?)",
                    [(space.id, uid, space.created_at) for uid in share_user_ids],
                )
        except sqlite3.IntegrityError as exc:
            if "container_name" in str(exc):  # the other uniqueness rule on spaces (SQLite names its columns)
                raise _conflict(exc, "spaces.container", f"container {space.container_name} has a Space") from exc
            raise _conflict(exc, "spaces.name", f"space name {space.name} taken") from exc

    async def space(self, space_id: str) -> SpaceRecord | None:
        row = self._one(f"SELECT {_SPACE_COLUMNS} FROM {_SPACE_FROM} WHERE s.id = ?", space_id)
        return SpaceRecord(*row) if row else None

    async def visible_spaces(self, user_id: str) -> list[SpaceRecord]:
        return list(self._memoized(("visible", user_id), lambda: self._visible_spaces(user_id)))

    def _visible_spaces(self, user_id: str) -> list[SpaceRecord]:
        # Indexed lookups joined by UNION: an OR across them makes SQLite scan every Space. UNION
        # (not ALL) keeps a Space once when it reaches the user several ways (owner, share, groups).
        rows = self._all(
            f"SELECT {_SPACE_COLUMNS} FROM {_SPACE_FROM} WHERE s.owner_id = ? AND s.deleted_at IS NULL"
            f" UNION SELECT {_SPACE_COLUMNS} FROM space_shares sh JOIN spaces s ON s.id = sh.space_id"
            " JOIN users u ON u.id = s.owner_id WHERE sh.user_id = ? AND s.deleted_at IS NULL"
            f" UNION SELECT {_SPACE_COLUMNS} FROM group_members gm"
            " JOIN space_group_shares gs ON gs.group_id = gm.group_id JOIN spaces s ON s.id = gs.space_id"
            " JOIN users u ON u.id = s.owner_id WHERE gm.user_id = ? AND s.deleted_at IS NULL"
            " ORDER BY 6, 4, 3, 1",
            user_id,
            user_id,
            user_id,
        )
        return [SpaceRecord(*r) for r in rows]

    async def is_shared_with(self, space_id: str, user_id: str) -> bool:
        row = self._one(
            "SELECT 1 FROM space_shares WHERE space_id = ? AND user_id = ?"
            " UNION ALL SELECT 1 FROM space_group_shares gs JOIN group_members gm ON gm.group_id = gs.group_id"
            " WHERE gs.space_id = ? AND gm.user_id = ?",
            space_id,
            user_id,
            space_id,
            user_id,
        )
        return row is not None

    async def shares(self, space_id: str) -> list[str]:
        return (await self.shares_of([space_id])).get(space_id, [])

    async def shares_of(self, space_ids: list[str]) -> dict[str, list[str]]:
        found = self._memoized(("shares", *space_ids), lambda: self._shares_of(space_ids))
        return {space_id: list(emails) for space_id, emails in found.items()}

    def _shares_of(self, space_ids: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {sid: [] for sid in space_ids}
        if not space_ids:
            return out
        marks = ",".join("?" * len(space_ids))
        rows = self._all(
            f"SELECT sh.space_id, u.email FROM space_shares sh JOIN users u ON u.id = sh.user_id"
            f" WHERE sh.space_id IN ({marks}) ORDER BY u.email",
            *space_ids,
        )
        for space_id, email in rows:
            out[space_id].append(email)
        return out

    async def update_shares(self, space_id: str, add: list[str], remove: list[str], now: int) -> None:
        with self._write() as db:
            db.executemany(
                "INSERT INTO space_shares (space_id, user_id, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                [(space_id, uid, now) for uid in add],
            )
            db.executemany(
                "DELETE FROM space_shares WHERE space_id = ? AND user_id = ?", [(space_id, uid) for uid in remove]
            )
            db.execute("UPDATE spaces SET updated_at = ? WHERE id = ?", (now, space_id))

    async def delete_space(self, space_id: str, now: int) -> None:
        # The row stays as a tombstone so that a late bootstrap hears "deleted", not "unknown".
        with self._write() as db:
            db.execute(
                "UPDATE spaces SET state = 'deleted', deleted_at = ?, updated_at = ?, agent_credential_hash = NULL"
                " WHERE id = ? AND deleted_at IS NULL",
                (now, now, space_id),
            )
            db.execute(
                "UPDATE space_tokens SET revoked_at = ? WHERE space_id = ? AND revoked_at IS NULL", (now, space_id)
            )
            db.execute("DELETE FROM space_shares WHERE space_id = ?", (space_id,))
            db.execute("DELETE FROM shared_ports WHERE space_id = ?", (space_id,))  # their addresses are free
            db.execute("DELETE FROM space_group_shares WHERE space_id = ?", (space_id,))

    # -- reusable Space keys ------------------------------------------------------------------

    async def create_space_key(self, key: SpaceKeyRecord, share_user_ids: list[str]) -> None:
        try:
            with self._write() as db:
                db.execute(
                    "INSERT INTO space_keys (id, owner_id, name, key_hash, created_at, expires_at, template)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (key.id, key.owner_id, key.name, key.key_hash, key.created_at, key.expires_at, key.template),
                )
                db.executemany(
                    "INSERT INTO space_key_shares (key_id, user_id) VALUES (?, ?)",
                    [(key.id, uid) for uid in share_user_ids],
                )
        except sqlite3.IntegrityError as exc:
            raise _conflict(exc, "space_keys.name", f"Space key name {key.name} taken") from exc

    async def space_keys(self, owner_id: str) -> list[SpaceKeyRecord]:
        rows = self._all(
            f"SELECT {_KEY_COLUMNS} FROM space_keys WHERE owner_id = ? ORDER BY created_at, name, id", owner_id
        )
        return [SpaceKeyRecord(*r) for r in rows]

    async def space_key_by_hash(self, key_hash: str) -> SpaceKeyRecord | None:
        row = self._one(f"SELECT {_KEY_COLUMNS} FROM space_keys WHERE key_hash = ?", key_hash)
        return SpaceKeyRecord(*row) if row else None

    async def space_key_shares(self, key_ids: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {key_id: [] for key_id in key_ids}
        if not key_ids:
            return out
        marks = ",".join("?" * len(key_ids))
        rows = self._all(
            f"SELECT ks.key_id, u.email FROM space_key_shares ks JOIN users u ON u.id = ks.user_id"
            f" WHERE ks.key_id IN ({marks}) ORDER BY u.email",
            *key_ids,
        )
        for key_id, email in rows:
            out[key_id].append(email)
        return out

    async def space_key_user_ids(self, key_id: str) -> list[str]:
        return [r[0] for r in self._all("SELECT user_id FROM space_key_shares WHERE key_id = ?", key_id)]

    async def revoke_space_key(self, key_id: str, now: int) -> None:
        self._run("UPDATE space_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now, key_id))

    async def spaces_of_key(self, key_id: str) -> list[SpaceRecord]:
        rows = self._all(
            f"SELECT {_SPACE_COLUMNS} FROM {_SPACE_FROM} WHERE s.space_key_id = ? AND s.deleted_at IS NULL"
            " ORDER BY s.created_at, s.name, s.id",
            key_id,
        )
        return [SpaceRecord(*r) for r in rows]

    async def space_for_container(self, key_id: str, container_name: str) -> SpaceRecord | None:
        row = self._one(
            f"SELECT {_SPACE_COLUMNS} FROM {_SPACE_FROM}"
            " WHERE s.space_key_id = ? AND s.container_name = ? AND s.deleted_at IS NULL",
            key_id,
            container_name,
        )
        return SpaceRecord(*row) if row else None

    async def register_keyed_agent(
        self, key_id: str, space_id: str, instance_id: str, facts: str, credential_hash: str, now: int
    ) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE spaces SET instance_id = ?, facts = ?, agent_credential_hash = ?, state = 'starting',"
                " ssh = NULL, updated_at = ?, last_seen_at = ? WHERE id = ? AND deleted_at IS NULL",
                (instance_id, facts, credential_hash, now, now, space_id),
            )
            db.execute("UPDATE space_keys SET uses = uses + 1, last_used_at = ? WHERE id = ?", (now, key_id))

    # -- Space tokens and the agent -----------------------------------------------------------

    async def add_token(self, token: TokenRecord) -> None:
        self._run(
            "INSERT INTO space_tokens (jti, space_id, issued_by, issued_at, expires_at) VALUES (?, ?, ?, ?, ?)",
            (token.jti, token.space_id, token.issued_by, token.issued_at, token.expires_at),
        )

    async def token(self, jti: str) -> TokenRecord | None:
        row = self._one(
            "SELECT jti, space_id, issued_by, issued_at, expires_at, used_instance_id, used_at, revoked_at"
            " FROM space_tokens WHERE jti = ?",
            jti,
        )
        return TokenRecord(*row) if row else None

    async def register_agent(
        self, jti: str, space_id: str, instance_id: str, facts: str, credential_hash: str, now: int
    ) -> bool:
        # The claim is one conditional UPDATE whose row count decides, inside BEGIN IMMEDIATE
        # (the write lock): a second broker process on this file, or a request that read the
        # token before another claimed it, updates no row and loses.
        with self._write() as db:
            claimed = db.execute(
                "UPDATE space_tokens SET used_instance_id = ?, used_at = COALESCE(used_at, ?)"
                " WHERE jti = ? AND space_id = ? AND revoked_at IS NULL"
                " AND (used_instance_id IS NULL OR used_instance_id = ?)"
                " AND EXISTS (SELECT 1 FROM spaces WHERE id = ? AND deleted_at IS NULL)",
                (instance_id, now, jti, space_id, instance_id, space_id),
            ).rowcount
            if claimed != 1:
                return False
            db.execute(
                "UPDATE spaces SET instance_id = ?, facts = ?, agent_credential_hash = ?, state = 'starting',"
                " updated_at = ?, last_seen_at = ? WHERE id = ?",
                (instance_id, facts, credential_hash, now, now, space_id),
            )
        return True

    async def space_by_credential(self, credential_hash: str) -> SpaceRecord | None:
        return self._memoized(("agent", credential_hash), lambda: self._space_by_credential(credential_hash))

    def _space_by_credential(self, credential_hash: str) -> SpaceRecord | None:
        row = self._one(
            f"SELECT {_SPACE_COLUMNS} FROM {_SPACE_FROM} WHERE s.agent_credential_hash = ? AND s.deleted_at IS NULL",
            credential_hash,
        )
        return SpaceRecord(*row) if row else None

    async def update_facts(self, space_id: str, facts: str, now: int) -> None:
        self._run("UPDATE spaces SET facts = ?, last_seen_at = ? WHERE id = ?", (facts, now, space_id))

    async def authorized_keys(self, space_id: str) -> list[AuthorizedKeyRow]:
        rows = self._all(
            "SELECT u.email, 'owner', k.public_key, k.fingerprint FROM spaces s"
            " JOIN users u ON u.id = s.owner_id JOIN ssh_keys k ON k.user_id = u.id"
            " WHERE s.id = ? AND s.deleted_at IS NULL"
            " UNION"
            " SELECT u.email, 'shared', k.public_key, k.fingerprint FROM space_shares sh"
            " JOIN users u ON u.id = sh.user_id JOIN ssh_keys k ON k.user_id = u.id"
            " WHERE sh.space_id = ?"
            " UNION"
            " SELECT u.email, 'shared', k.public_key, k.fingerprint FROM space_group_shares gs"
            " JOIN spaces s ON s.id = gs.space_id JOIN group_members gm ON gm.group_id = gs.group_id"
            " JOIN users u ON u.id = gm.user_id JOIN ssh_keys k ON k.user_id = u.id"
            " WHERE gs.space_id = ? AND gm.user_id <> s.owner_id"
            " ORDER BY 2, 1, 4",
            space_id,
            space_id,
            space_id,
        )
        return [AuthorizedKeyRow(*r) for r in rows]

    async def heartbeat(
        self, space_id: str, state: SpaceState, now: int, facts: str | None, ssh: str | None = None
    ) -> None:
        self._run(
            "UPDATE spaces SET state = ?, last_seen_at = ?, facts = COALESCE(?, facts), ssh = COALESCE(?, ssh),"
            " updated_at = CASE WHEN state = ? THEN updated_at ELSE ? END"
            " WHERE id = ? AND deleted_at IS NULL",
            (state, now, facts, ssh, state, now, space_id),
        )

    async def record_seen(self, seen: dict[str, int]) -> None:
        with self._write() as db:
            db.executemany(
                "UPDATE spaces SET last_seen_at = MAX(COALESCE(last_seen_at, 0), ?) WHERE id = ?",
                [(at, space_id) for space_id, at in seen.items()],
            )

    async def stop_silent_spaces(self, seen_before: int, now: int) -> list[str]:
        with self._write() as db:
            ids = [
                r[0]
                for r in db.execute(
                    "SELECT id FROM spaces WHERE state IN ('starting', 'running', 'stopping') AND deleted_at IS NULL"
                    " AND last_seen_at < ?",
                    (seen_before,),
                )
            ]
            db.executemany("UPDATE spaces SET state = 'stopped', updated_at = ? WHERE id = ?", [(now, i) for i in ids])
        return ids

    async def set_desired_state(self, space_id: str, desired: DesiredState, state: SpaceState, now: int) -> None:
        # The agent reports sshd's health afresh once it has acted; until then it is unknown.
        self._run(
            "UPDATE spaces SET desired_state = ?, state = ?, ssh = NULL, updated_at = ?"
            " WHERE id = ? AND deleted_at IS NULL",
            (desired, state, now, space_id),
        )

    # -- the connection log (every stream) ---------------------------------------------------

    async def open_stream(self, stream: StreamRecord) -> None:
        self._run(
            "INSERT INTO streams (id, space_id, user_id, email, client_address, opened_at, kind, replica_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                stream.id,
                stream.space_id,
                stream.user_id,
                stream.email,
                stream.client_address,
                stream.opened_at,
                stream.kind,
                stream.replica_id,
            ),
        )

    async def close_stream(self, stream_id: str, now: int, bytes_in: int, bytes_out: int, reason: str) -> None:
        self._run(
            "UPDATE streams SET closed_at = ?, bytes_in = ?, bytes_out = ?, close_reason = ?"
            " WHERE id = ? AND closed_at IS NULL",
            (now, bytes_in, bytes_out, reason, stream_id),
        )

    async def open_streams(self, space_id: str) -> list[StreamRecord]:
        rows = self._all(
            "SELECT id, space_id, user_id, email, client_address, opened_at, closed_at, bytes_in, bytes_out,"
            " close_reason, kind, replica_id FROM streams"
            " WHERE space_id = ? AND closed_at IS NULL ORDER BY opened_at, email, id",
            space_id,
        )
        return [StreamRecord(*r) for r in rows]

    async def net_bytes(self, space_ids: list[str], since: int) -> dict[str, int]:
        return dict(self._memoized(("net", str(since), *space_ids), lambda: self._net_bytes(space_ids, since)))

    def _net_bytes(self, space_ids: list[str], since: int) -> dict[str, int]:
        out = dict.fromkeys(space_ids, 0)
        if space_ids:
            marks = ", ".join("?" for _ in space_ids)
            for space_id, total in self._all(
                "SELECT space_id, SUM(bytes_in + bytes_out) FROM streams"
                f" WHERE space_id IN ({marks}) AND closed_at >= ? GROUP BY space_id",
                *space_ids,
                since,
            ):
                out[space_id] = int(total)
        return out

    async def close_dangling_streams(self, now: int, keep: Collection[str] = ()) -> None:
        # A broker that stopped with streams open never logged their end; they ended with it.
        marks = ", ".join("?" * len(keep))
        self._run(
            "UPDATE streams SET closed_at = ?, close_reason = 'broker restarted'"
            f" WHERE closed_at IS NULL AND replica_id NOT IN ({marks})",
            (now, *keep),
        )

    # -- shared ports -------------------------------------------------------------------------

    async def user(self, user_id: str) -> UserRecord | None:
        row = self._one("SELECT id, email, is_admin, created_at FROM users WHERE id = ?", user_id)
        return _user(row) if row else None

    async def user_handle(self, user_id: str) -> str | None:
        row = self._one("SELECT handle FROM users WHERE id = ?", user_id)
        return row[0] if row else None

    async def set_user_handle(self, user_id: str, handle: str) -> bool:
        try:
            with self._write() as db:
                db.execute("UPDATE users SET handle = ? WHERE id = ? AND handle IS NULL", (handle, user_id))
        except sqlite3.IntegrityError as exc:
            _conflict(exc, "users.handle", f"handle {handle} taken")  # raises anything but a uniqueness failure
            return False
        return True

    async def shared_ports(self, space_id: str) -> list[PortRecord]:
        rows = self._all(f"SELECT {_PORT_COLUMNS} FROM shared_ports p WHERE p.space_id = ? ORDER BY p.port", space_id)
        return [PortRecord(*r) for r in rows]

    async def shared_port(self, address: str) -> PortRecord | None:
        return self._memoized(("port", address), lambda: self._shared_port(address))

    def _shared_port(self, address: str) -> PortRecord | None:
        row = self._one(
            f"SELECT {_PORT_COLUMNS} FROM shared_ports p JOIN spaces s ON s.id = p.space_id"
            " WHERE p.address = ? AND s.deleted_at IS NULL",
            address,
        )
        return PortRecord(*row) if row else None

    async def share_port(self, port: PortRecord) -> None:
        try:
            with self._write() as db:
                db.execute(
                    "INSERT INTO shared_ports (space_id, port, level, label, address, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (space_id, port)"
                    " DO UPDATE SET level = excluded.level, label = excluded.label, updated_at = excluded.updated_at",
                    (port.space_id, port.port, port.level, port.label, port.address, port.created_at, port.updated_at),
                )
        except sqlite3.IntegrityError as exc:
            raise _conflict(exc, "shared_ports.address", f"app address {port.address} taken") from exc

    async def unshare_port(self, space_id: str, port: int) -> PortRecord | None:
        with self._write() as db:
            row = db.execute(
                "DELETE FROM shared_ports WHERE space_id = ? AND port = ?"
                " RETURNING space_id, port, level, label, address, created_at, updated_at",
                (space_id, port),
            ).fetchone()
        return PortRecord(*row) if row else None

    async def claim_ticket(self, nonce: str, expires_at: int, now: int) -> bool:
        with self._write() as db:
            db.execute("DELETE FROM used_tickets WHERE expires_at <= ?", (now,))
            cur = db.execute(
                "INSERT INTO used_tickets (nonce, expires_at) VALUES (?, ?) ON CONFLICT (nonce) DO NOTHING",
                (nonce, expires_at),
            )
        return cur.rowcount > 0

    # -- templates ----------------------------------------------------------------------------

    async def add_template(self, template: TemplateRecord) -> None:
        try:
            with self._write() as db:
                if template.is_default:
                    db.execute("UPDATE templates SET is_default = 0 WHERE is_default = 1")
                db.execute(
                    f"INSERT INTO templates ({_TEMPLATE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        template.name,
                        template.description,
                        template.compute_units,
                        template.storage_units,
                        int(template.is_default),
                        template.created_at,
                    ),
                )
        except sqlite3.IntegrityError as exc:
            raise _conflict(exc, "templates.name", f"template {template.name} exists") from exc

    async def templates(self) -> list[TemplateRecord]:
        return [_template(r) for r in self._all(f"SELECT {_TEMPLATE_COLUMNS} FROM templates ORDER BY name")]

    async def template(self, name: str) -> TemplateRecord | None:
        row = self._one(f"SELECT {_TEMPLATE_COLUMNS} FROM templates WHERE name = ?", name)
        return _template(row) if row else None

    async def default_template(self) -> TemplateRecord | None:
        row = self._one(f"SELECT {_TEMPLATE_COLUMNS} FROM templates WHERE is_default = 1")
        return _template(row) if row else None

    async def set_default_template(self, name: str) -> bool:
        with self._write() as db:
            if db.execute("SELECT 1 FROM templates WHERE name = ?", (name,)).fetchone() is None:
                return False
            db.execute("UPDATE templates SET is_default = 0 WHERE is_default = 1 AND name <> ?", (name,))
            db.execute("UPDATE templates SET is_default = 1 WHERE name = ?", (name,))
        return True

    async def remove_template(self, name: str) -> bool:
        return self._run("DELETE FROM templates WHERE name = ?", (name,)).rowcount > 0

    # -- quotas -------------------------------------------------------------------------------

    async def set_user_quota(self, user_id: str, limits: Limits) -> None:
        self._run(
            "UPDATE users SET quota_spaces = ?, quota_compute = ?, quota_storage = ? WHERE id = ?",
            (limits.spaces, limits.compute, limits.storage, user_id),
        )

    async def set_group_quota(self, group_id: str, limits: Limits) -> None:
        self._run(
            "UPDATE user_groups SET quota_spaces = ?, quota_compute = ?, quota_storage = ? WHERE id = ?",
            (limits.spaces, limits.compute, limits.storage, group_id),
        )

    async def quotas_of(self, user_id: str) -> tuple[Limits, list[tuple[str, Limits]]]:
        own = self._one("SELECT quota_spaces, quota_compute, quota_storage FROM users WHERE id = ?", user_id)
        groups = self._all(
            "SELECT g.name, g.quota_spaces, g.quota_compute, g.quota_storage FROM group_members gm"
            " JOIN user_groups g ON g.id = gm.group_id WHERE gm.user_id = ? ORDER BY g.name",
            user_id,
        )
        return (Limits(*own) if own else Limits()), [(r[0], Limits(*r[1:])) for r in groups]

    async def usage(self, user_id: str) -> Usage:
        # Inside a transaction this already holds the quota: BEGIN IMMEDIATE took the write lock.
        row = self._one(
            "SELECT COUNT(*),"
            f" COALESCE(SUM(CASE WHEN state IN {_COMPUTE_STATES} THEN compute_units ELSE 0 END), 0),"
            " COALESCE(SUM(storage_units), 0)"
            " FROM spaces WHERE owner_id = ? AND deleted_at IS NULL",
            user_id,
        )
        return Usage(int(row[0]), int(row[1]), int(row[2]))

    # -- groups -------------------------------------------------------------------------------

    async def create_group(self, group: GroupRecord) -> None:
        try:
            with self._write() as db:
                db.execute(
                    "INSERT INTO user_groups (id, name, created_at, quota_spaces, quota_compute, quota_storage)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        group.id,
                        group.name,
                        group.created_at,
                        group.quota.spaces,
                        group.quota.compute,
                        group.quota.storage,
                    ),
                )
        except sqlite3.IntegrityError as exc:
            raise _conflict(exc, "groups.name", f"group {group.name} exists") from exc

    def _groups(self, where: str, *args: Any) -> list[GroupRecord]:
        rows = self._all(
            "SELECT id, name, created_at, quota_spaces, quota_compute, quota_storage FROM user_groups"
            f" WHERE {where} ORDER BY name",
            *args,
        )
        members: dict[str, list[str]] = {r[0]: [] for r in rows}
        if rows:
            marks = ", ".join("?" for _ in rows)
            for group_id, email in self._all(
                "SELECT gm.group_id, u.email FROM group_members gm JOIN users u ON u.id = gm.user_id"
                f" WHERE gm.group_id IN ({marks}) ORDER BY u.email",
                *members,
            ):
                members[group_id].append(email)
        return [GroupRecord(r[0], r[1], r[2], Limits(*r[3:6]), tuple(members[r[0]])) for r in rows]

    async def groups(self) -> list[GroupRecord]:
        return self._groups("1 = 1")

    async def group(self, name: str) -> GroupRecord | None:
        found = self._groups("name = ?", name)
        return found[0] if found else None

    async def remove_group(self, group_id: str) -> None:
        self._run("DELETE FROM user_groups WHERE id = ?", (group_id,))

    async def add_group_members(self, group_id: str, user_ids: list[str], now: int) -> None:
        with self._write() as db:
            db.executemany(
                "INSERT INTO group_members (group_id, user_id, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                [(group_id, uid, now) for uid in user_ids],
            )

    async def remove_group_members(self, group_id: str, user_ids: list[str]) -> None:
        with self._write() as db:
            db.executemany(
                "DELETE FROM group_members WHERE group_id = ? AND user_id = ?", [(group_id, uid) for uid in user_ids]
            )

    async def update_group_shares(self, space_id: str, add: list[str], remove: list[str], now: int) -> None:
        with self._write() as db:
            db.executemany(
                "INSERT INTO space_group_shares (space_id, group_id, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                [(space_id, gid, now) for gid in add],
            )
            db.executemany(
                "DELETE FROM space_group_shares WHERE space_id = ? AND group_id = ?",
                [(space_id, gid) for gid in remove],
            )
            db.execute("UPDATE spaces SET updated_at = ? WHERE id = ?", (now, space_id))

    async def group_shares_of(self, space_ids: list[str]) -> dict[str, list[str]]:
        found = self._memoized(("group_shares", *space_ids), lambda: self._group_shares_of(space_ids))
        return {space_id: list(names) for space_id, names in found.items()}

    def _group_shares_of(self, space_ids: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {sid: [] for sid in space_ids}
        if space_ids:
            marks = ", ".join("?" for _ in space_ids)
            for space_id, name in self._all(
                "SELECT gs.space_id, g.name FROM space_group_shares gs JOIN user_groups g ON g.id = gs.group_id"
                f" WHERE gs.space_id IN ({marks}) ORDER BY g.name",
                *space_ids,
            ):
                out[space_id].append(name)
        return out

    async def spaces_shared_with_group(self, group_id: str) -> list[SpaceRecord]:
        rows = self._all(
            f"SELECT {_SPACE_COLUMNS} FROM space_group_shares gs JOIN spaces s ON s.id = gs.space_id"
            " JOIN users u ON u.id = s.owner_id WHERE gs.group_id = ? AND s.deleted_at IS NULL ORDER BY 6, 4, 3, 1",
            group_id,
        )
        return [SpaceRecord(*r) for r in rows]

    # -- access requests ----------------------------------------------------------------------

    async def add_access_request(self, request: AccessRequestRecord, device_code_hash: str) -> None:
        self._run(
            "INSERT INTO access_requests (id, email, message, client_address, device_code_hash, state, created_at,"
            " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                request.id,
                request.email,
                request.message,
                request.client_address,
                device_code_hash,
                request.state,
                request.created_at,
                request.expires_at,
            ),
        )

    async def access_requests(self, state: str | None = None) -> list[AccessRequestRecord]:
        if state is None:
            rows = self._all(f"SELECT {_REQUEST_COLUMNS} FROM access_requests ORDER BY created_at, email, id")
        else:
            rows = self._all(
                f"SELECT {_REQUEST_COLUMNS} FROM access_requests WHERE state = ? ORDER BY created_at, email, id", state
            )
        return [AccessRequestRecord(*r) for r in rows]

    async def access_request(self, request_id: str) -> AccessRequestRecord | None:
        row = self._one(f"SELECT {_REQUEST_COLUMNS} FROM access_requests WHERE id = ?", request_id)
        return AccessRequestRecord(*row) if row else None

    async def access_request_by_device_code(self, device_code_hash: str) -> AccessRequestRecord | None:
        row = self._one(f"SELECT {_REQUEST_COLUMNS} FROM access_requests WHERE device_code_hash = ?", device_code_hash)
        return AccessRequestRecord(*row) if row else None

    async def count_access_requests(self, email: str, client_address: str, since: int) -> tuple[int, int]:
        row = self._one(
            "SELECT (SELECT COUNT(*) FROM access_requests WHERE email = ? AND created_at >= ?),"
            " (SELECT COUNT(*) FROM access_requests WHERE client_address = ? AND created_at >= ?)",
            email,
            since,
            client_address,
            since,
        )
        return int(row[0]), int(row[1])

    async def decide_access_request(
        self, request_id: str, state: str, by: str, now: int, user_id: str | None = None, space_id: str | None = None
    ) -> bool:
        cur = self._run(
            "UPDATE access_requests SET state = ?, decided_by = ?, decided_at = ?, user_id = ?, space_id = ?"
            " WHERE id = ? AND state = 'pending' AND expires_at > ?",
            (state, by, now, user_id, space_id, request_id, now),
        )
        return cur.rowcount == 1

    async def claim_access_request(self, request_id: str, now: int) -> bool:
        cur = self._run(
            "UPDATE access_requests SET state = 'claimed', last_polled_at = ? WHERE id = ? AND state = 'approved'",
            (now, request_id),
        )
        return cur.rowcount == 1

    async def touch_access_request(self, request_id: str, now: int) -> None:
        self._run("UPDATE access_requests SET last_polled_at = ? WHERE id = ?", (now, request_id))

    # -- the outbox ---------------------------------------------------------------------------

    async def outbox_put(self, channel: str, payload: bytes, now: int) -> None:
        # AUTOINCREMENT: ids only grow, even after the newest is trimmed
        self._run("INSERT INTO bus_outbox (channel, payload, created_at) VALUES (?, ?, ?)", (channel, payload, now))

    async def outbox_after(self, after: int, limit: int) -> list[tuple[int, str, bytes]]:
        rows = self._all("SELECT id, channel, payload FROM bus_outbox WHERE id > ? ORDER BY id LIMIT ?", after, limit)
        return [(int(r[0]), str(r[1]), bytes(r[2])) for r in rows]

    async def outbox_newest(self) -> int:
        return int(self._one("SELECT coalesce(max(id), 0) FROM bus_outbox")[0])

    async def outbox_trim(self, before: int) -> None:
        self._run("DELETE FROM bus_outbox WHERE created_at < ?", (before,))

    # -- token signing keys -------------------------------------------------------------------

    async def signing_keys(self) -> list[SealedKeyRecord]:
        rows = self._all("SELECT kid, created_at, sealed FROM signing_keys ORDER BY created_at, kid")
        return [SealedKeyRecord(*r) for r in rows]

    async def add_signing_key(self, key: SealedKeyRecord) -> None:
        try:
            self._run(
                "INSERT INTO signing_keys (kid, created_at, sealed) VALUES (?, ?, ?)",
                (key.kid, key.created_at, key.sealed),
            )
        except sqlite3.IntegrityError as exc:
            raise _conflict(exc, "signing_keys.kid", f"signing key {key.kid} exists") from exc

    async def remove_signing_keys(self, kids: list[str]) -> None:
        with self._write() as db:
            db.executemany("DELETE FROM signing_keys WHERE kid = ?", [(kid,) for kid in kids])

    # -- replicas -----------------------------------------------------------------------------

    async def beat_replica(self, replica: ReplicaRecord) -> bool:
        with self._write() as db:
            moved = db.execute(
                "UPDATE replicas SET address = ?, seen_at = ? WHERE id = ?",
                (replica.address, replica.seen_at, replica.id),
            ).rowcount
            if not moved:
                db.execute(
                    "INSERT INTO replicas (id, address, started_at, seen_at) VALUES (?, ?, ?, ?)",
                    (replica.id, replica.address, replica.started_at, replica.seen_at),
                )
        return bool(moved)

    async def live_replicas(self, seen_since: int) -> list[ReplicaRecord]:
        rows = self._all(f"SELECT {_REPLICA_COLUMNS} FROM replicas WHERE seen_at >= ? ORDER BY id", seen_since)
        return [ReplicaRecord(*r) for r in rows]

    async def remove_replica(self, replica_id: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM agent_channels WHERE replica_id = ?", (replica_id,))
            db.execute("DELETE FROM replicas WHERE id = ?", (replica_id,))

    async def forget_replicas(self, seen_before: int) -> list[str]:
        with self._write() as db:
            gone = [r[0] for r in db.execute("SELECT id FROM replicas WHERE seen_at < ? ORDER BY id", (seen_before,))]
            db.executemany("DELETE FROM agent_channels WHERE replica_id = ?", [(g,) for g in gone])
            db.executemany("DELETE FROM replicas WHERE id = ?", [(g,) for g in gone])
        return gone

    async def hold_agent_channel(self, space_id: str, replica_id: str, now: int) -> None:
        self._run(
            "INSERT INTO agent_channels (space_id, replica_id, attached_at) VALUES (?, ?, ?)"
            " ON CONFLICT (space_id) DO UPDATE SET replica_id = excluded.replica_id,"
            " attached_at = excluded.attached_at, terminals = NULL, listening = NULL",
            (space_id, replica_id, now),
        )

    async def release_agent_channel(self, space_id: str, replica_id: str) -> None:
        self._run("DELETE FROM agent_channels WHERE space_id = ? AND replica_id = ?", (space_id, replica_id))

    async def report_agent(self, space_id: str, replica_id: str, terminals: str, listening: str) -> None:
        self._run(
            "UPDATE agent_channels SET terminals = ?, listening = ? WHERE space_id = ? AND replica_id = ?",
            (terminals, listening, space_id, replica_id),
        )

    async def agent_channel(self, space_id: str) -> AgentChannelRecord | None:
        row = self._one(
            "SELECT r.id, r.address, r.started_at, r.seen_at, c.terminals, c.listening, c.attached_at"
            " FROM agent_channels c JOIN replicas r ON r.id = c.replica_id WHERE c.space_id = ?",
            space_id,
        )
        return AgentChannelRecord(space_id, ReplicaRecord(*row[:4]), row[4], row[5], int(row[6])) if row else None

    # -- audit --------------------------------------------------------------------------------

    async def audit(self, now: int, actor: str, action: str, target: str, detail: str = "") -> None:
        self._run(
            "INSERT INTO audit_log (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
            (now, actor, action, target, detail),
        )

    async def audit_log(
        self, *, limit: int, since: int | None = None, actor: str = "", action: str = "", target: str = ""
    ) -> list[AuditRecord]:
        # No indexes but the rowid: every audited request would pay for one, and this is an
        # admin's occasional read.
        where: list[str] = ["1"]
        args: list[object] = []
        if since is not None:
            where.append("at >= ?")
            args.append(since)
        if actor:
            where.append("actor = ?")
            args.append(actor)
        if action:
            where.append("(action = ? OR substr(action, 1, ?) = ?)")
            args += [action, len(action) + 1, action + "."]
        if target:
            where.append("target = ?")
            args.append(target)
        rows = self._all(
            "SELECT id, at, actor, action, target, detail FROM audit_log"
            f" WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
            *args,
            limit,
        )
        return [AuditRecord(*r) for r in reversed(rows)]


class SqliteTransaction(_Queries):
    """Calls grouped into one commit on the store's connection (or, nested, a savepoint in it)."""

    def __init__(self, db: Connection, depth: int = 0) -> None:
        self._db = db
        self._depth = depth
        self.aborted: BaseException | None = None  # the failure that aborted it
        self.finished = False

    def _check(self) -> None:
        if self.finished:
            raise StoreError("The transaction is over: its block has ended.")
        if self.aborted is not None:
            raise TransactionAborted(
                f"The transaction was aborted by an earlier failure ({self.aborted!r}); it can only roll back."
            ) from self.aborted

    def _run(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        self._check()
        try:
            return self._db.execute(sql, args)
        except BaseException as exc:
            self.aborted = exc
            raise

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        self._check()
        try:
            yield self._db
        except BaseException as exc:
            self.aborted = exc
            raise

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteTransaction]:
        """A savepoint: its block's changes are undone alone when it raises."""
        name = f"pair_sp{self._depth + 1}"
        self._run(f"SAVEPOINT {name}")
        inner = SqliteTransaction(self._db, self._depth + 1)
        try:
            yield inner
            if inner.aborted is not None:
                raise TransactionAborted(
                    f"The savepoint was aborted by an earlier failure ({inner.aborted!r}) and rolled back."
                ) from inner.aborted
        except BaseException:
            inner.finished = True
            self._run(f"ROLLBACK TO {name}")
            self._run(f"RELEASE {name}")
            raise
        inner.finished = True
        self._run(f"RELEASE {name}")


class SqliteStore(_Queries):
    def __init__(self, path: Path, *, wal_pages: int = WAL_BACKSTOP_PAGES) -> None:
        self.path = path
        self.health = Health()
        self._db = connect(path, self.health)
        try:
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=5000"):
                self._db.execute(f"PRAGMA {pragma}")
            self.applied = migrate(self._db)
        except BaseException:
            self._db.close()
            raise
        # The checkpointer's thread does the checkpoints; this connection only past `wal_pages`.
        self._db.execute(f"PRAGMA wal_autocheckpoint={int(wal_pages)}")
        self._checkpointer = Checkpointer(path, self.health)
        self._memo: dict[tuple[str, ...], Any] = {}
        self._generation: tuple[int, int] = (-1, -1)
        # The event loop in whose current step data_version was read (see _check_once_this_step).
        self._checked_in: asyncio.AbstractEventLoop | None = None

    def _run(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        if self._db.in_transaction:
            raise StoreError(OUTSIDE)
        return self._db.execute(sql, args)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        if self._db.in_transaction:
            raise StoreError(OUTSIDE)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
            self._db.execute("COMMIT")
        except BaseException:
            self._db.rollback_open()
            raise

    def _memoized(self, key: tuple[str, ...], load: Callable[[], T]) -> T:
        """`load()`, or what it returned last time if the database has not changed since."""
        if self._db.in_transaction:
            raise StoreError(OUTSIDE)
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or loop is not self._checked_in or self._db.total_changes != self._generation[0]:
            generation = (self._db.total_changes, self._db.execute("PRAGMA data_version").fetchone()[0])
            if generation != self._generation:
                self._memo.clear()
                self._generation = generation
            self._check_once_this_step(loop)
        if len(self._memo) >= _MEMO_LIMIT:
            self._memo.clear()
        try:
            return cast(T, self._memo[key])
        except KeyError:
            value = self._memo[key] = load()
            return value

    def _check_once_this_step(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Skip the data_version read until `loop`'s next step: every request it runs in one step
        shares one read. Outside a running loop it is read every time; a loop closed before its
        next step (asyncio.run in tests) is never the running one again."""
        if loop is not None and self._checked_in is not loop:
            self._checked_in = loop
            loop.call_soon(self._uncheck, loop)

    def _uncheck(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._checked_in is loop:
            self._checked_in = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteTransaction]:
        # Safe inline: nothing in SQLite suspends, so no other request runs inside the block as
        # long as the block itself awaits nothing but the store.
        if self._db.in_transaction:
            raise StoreError("A transaction is open on this store already; nest with its transaction().")
        self._db.execute("BEGIN IMMEDIATE")
        tx = SqliteTransaction(self._db)
        try:
            yield tx
            if tx.aborted is not None:
                raise TransactionAborted(
                    f"The transaction was aborted by an earlier failure ({tx.aborted!r}) and rolled back."
                ) from tx.aborted
            tx.finished = True
            self._db.execute("COMMIT")
        except BaseException:
            tx.finished = True
            self._db.rollback_open()
            raise

    async def close(self) -> None:
        self.close_now()

    # -- reading every row, for moving the data elsewhere (broker/store/move.py) ----------------

    def schema_version(self) -> int:
        return int(self._db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] or 0)

    def tables(self) -> list[str]:
        """The broker's tables, each after the tables its foreign keys name."""
        names = [
            r[0]
            for r in self._db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
                " AND name != 'schema_migrations' ORDER BY name"
            )
        ]
        parents = {n: {r[2] for r in self._db.execute(f"PRAGMA foreign_key_list({_quoted(n)})")} - {n} for n in names}
        ordered: list[str] = []
        while len(ordered) < len(names):
            ready = [n for n in names if n not in ordered and parents[n] <= set(ordered)]
            if not ready:
                raise StoreError(f"The tables' foreign keys form a cycle: {sorted(set(names) - set(ordered))}.")
            ordered += ready
        return ordered

    def columns(self, table: str) -> list[str]:
        return [r[1] for r in self._db.execute(f"PRAGMA table_info({_quoted(table)})")]

    def count(self, table: str) -> int:
        return int(self._db.execute(f"SELECT COUNT(*) FROM {_quoted(table)}").fetchone()[0])

    def batches(self, table: str, columns: list[str], size: int = 5000) -> Iterator[list[tuple[Any, ...]]]:
        """Every row of `table` (those `columns`), `size` rows at a time, in one read transaction
        so the rows are one snapshot."""
        cursor = self._db.execute(f"SELECT {', '.join(map(_quoted, columns))} FROM {_quoted(table)}")
        while batch := cursor.fetchmany(size):
            yield batch

    def close_now(self) -> None:
        self._checkpointer.stop()
        self._db.close()

    async def check_writable(self) -> None:
        failing = self.health.failing
        if failing:  # a commit of one page fits where requests' writes do not: ask for room too
            room_for_writes(self.path, self.health)
        self._db.testing = True
        try:
            with self._write() as db:
                # Setting user_version rewrites the header page: a real commit that changes nothing.
                version = db.execute("PRAGMA user_version").fetchone()[0]
                db.execute(f"PRAGMA user_version = {int(version)}")
        finally:
            self._db.testing = False
        self.health.recovered(tested=failing)

    @property
    def unavailable(self) -> StoreUnavailable | None:
        return self.health.failure


def _template(row: Any) -> TemplateRecord:
    return TemplateRecord(row[0], row[1], int(row[2]), int(row[3]), bool(row[4]), int(row[5]))


def _quoted(name: str) -> str:
    """An SQL identifier, double-quoted (names come from the database's own catalog)."""
    return '"' + name.replace('"', '""') + '"'


def _user(row: Any) -> UserRecord:
    return UserRecord(row[0], row[1], bool(row[2]), row[3])
