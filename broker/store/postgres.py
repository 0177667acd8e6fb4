"""The store for several broker replicas: PostgreSQL, through psycopg 3's async connections and
its pool (psycopg_pool), opened in the event loop that uses it.

- A call outside a transaction takes a connection from the pool for its statement (autocommit),
  or for the few statements it needs inside one BEGIN … COMMIT.
- `transaction()` holds one connection for its block; nested, psycopg makes a SAVEPOINT. The
  first failed statement aborts it (PostgreSQL refuses everything after it); this store says so
  with TransactionAborted rather than PostgreSQL's own error, as the contract asks
  (broker/store/__init__.py).
- Errors are told apart by SQLSTATE in one place (broker/store/sqlstates.py): unique_violation
  is a Conflict with the rule the call names, an unreachable or full server StoreUnavailable.
- Nothing is remembered between calls: other replicas write the same database, and a read that
  skipped it could be stale. Text columns sort bytewise (COLLATE "C"), as SQLite's do.
"""

from __future__ import annotations

import asyncio
import select
import time
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import psycopg
import psycopg_pool
from psycopg import conninfo, pq, sql
from psycopg.abc import Query

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
    sqlstates,
)
from broker.store.batching import Batched, Grouped
from broker.store.failures import Health
from pair.api.models import SpaceState

DIALECT = "postgresql"
SCHEMES = ("postgresql", "postgres")  # what libpq accepts as a URL's scheme
POOL_MAX = 10  # connections per broker process; PostgreSQL's default max_connections is 100
CONNECT_TIMEOUT = 10.0  # seconds to wait for a connection, at start-up and from the pool
BUSY_TIMEOUT = 60.0  # seconds to wait for a pooled connection while all of them are busy
MIGRATION_LOCK = 0x70616972  # pg_advisory_lock key ("pair"): one replica migrates at a time
OUTBOX_LOCK = 0x70616973  # pg_advisory_xact_lock key: the outbox's writers take turns

_SPACE_COLUMNS = """s.id, s.owner_id, u.email, s.name, s.state, s.created_at, s.updated_at,
    s.last_seen_at, s.deleted_at, s.instance_id, s.facts, s.desired_state, s.ssh, s.space_key_id, s.container_name,
    s.template, s.compute_units, s.storage_units"""
_SPACE_FROM = "spaces s JOIN users u ON u.id = s.owner_id"
_USER_COLUMNS = "id, email, is_admin, created_at"
_KEY_COLUMNS = "id, owner_id, name, key_hash, created_at, expires_at, revoked_at, uses, last_used_at, template"
_REQUEST_COLUMNS = """id, email, message, client_address, state, created_at, expires_at, decided_at, decided_by,
    user_id, space_id, last_polled_at"""
_TEMPLATE_COLUMNS = "name, description, compute_units, storage_units, is_default, created_at"
_GROUP_COLUMNS = "id, name, created_at, quota_spaces, quota_compute, quota_storage"
_COMPUTE_STATES = "('starting', 'running')"  # the states that use compute units (seed 001's lifecycle)
_REPLICA_COLUMNS = "id, address, started_at, seen_at"
_PORT_COLUMNS = "p.space_id, p.port, p.level, p.label, p.address, p.created_at, p.updated_at"

Rows = list[tuple[Any, ...]]
# The Conflict a uniqueness failure is to a call: (rule, message); or, for a call that more than
# one rule can refuse, one such pair per constraint (PostgreSQL names the one it hit).
Conflicts = tuple[str, str] | dict[str, tuple[str, str]]


def describe(url: str) -> str:
    """`url` as it may be shown and logged: scheme, user, host, port and database, never a
    password (nor any other parameter, which may carry one)."""
    try:
        parts = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(a URL that does not parse)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    host = str(parts.get("host") or "")
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{host}{port}/{parts.get('dbname') or ''}"


def server_address(url: str) -> str:
    """The server `url` names as HOST:PORT (libpq's defaults: a local socket, 5432), for the
    log; several hosts (libpq's failover list) are separated by commas."""
    parts = conninfo.conninfo_to_dict(url)
    hosts = str(parts.get("host") or parts.get("hostaddr") or "localhost").split(",")
    ports = str(parts.get("port") or "").split(",")
    return ",".join(f"{host}:{ports[min(i, len(ports) - 1)] or 5432}" for i, host in enumerate(hosts))


async def server_answers(url: str) -> bool:
    """Whether the PostgreSQL server `url` names accepts connections: libpq's PQping says
    PQPING_OK (whatever it would say to the broker's role: a wrong password or database still
    answers), not PQPING_NO_RESPONSE (down, unreachable) or PQPING_REJECT (starting up, shutting
    down, recovering). At most CONNECT_TIMEOUT seconds unless the URL sets `connect_timeout`;
    libpq blocks, so it runs in a thread.
    https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-PQPINGPARAMS"""
    params = conninfo.conninfo_to_dict(url)
    params.setdefault("connect_timeout", str(int(CONNECT_TIMEOUT)))
    target = conninfo.make_conninfo("", **params).encode()
    return await asyncio.to_thread(pq.PGconn.ping, target) == pq.Ping.OK


def new_pool(url: str, *, name: str, max_size: int, timeout: float) -> psycopg_pool.AsyncConnectionPool[Any]:
    """An unopened pool of autocommit connections to `url` (1 to `max_size`; `timeout` s to lend
    one), checked by `check_idle` before each lending, since a server restart kills every pooled
    connection. The one pool policy of the store and the bus (broker.postgres_bus)."""
    return psycopg_pool.AsyncConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        kwargs={"autocommit": True},
        timeout=timeout,
        check=check_idle,
        open=False,
        name=name,
    )


async def check_idle(conn: psycopg.AsyncConnection[Any]) -> None:
    """The `check` of the broker's psycopg pools, run before a connection is lent: a connection
    whose socket became readable while it sat idle heard from the server, which after a restart
    or a terminated backend is its goodbye and end of file, so it gets a round trip
    (psycopg_pool's check_connection) and is discarded if dead; any other is lent at the cost of
    one poll(2), without the round trip check_connection alone would add to every query.
    Raises what the round trip raises (the pool then makes a new connection)."""
    try:
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN)
        heard = bool(poller.poll(0))
    except (OSError, ValueError, psycopg.Error):  # no socket left: the round trip says why
        heard = True
    if heard:
        await psycopg_pool.AsyncConnectionPool.check_connection(conn)


def translate(exc: psycopg.Error, where: str, health: Health | None, conflict: Conflicts | None = None) -> StoreError:
    """The StoreError `exc` is to the broker (broker.store.sqlstates decides): a Conflict naming
    `conflict`'s rule when a uniqueness rule was hit and the call expected one (with a dict, the
    rule of the constraint PostgreSQL names), StoreUnavailable
    (reported to `health`) when the environment fails, a plain StoreError otherwise."""
    lost = isinstance(exc, psycopg.OperationalError)
    verdict = sqlstates.verdict(exc.sqlstate, connection_lost=lost)
    if verdict.kind == "conflict" and isinstance(conflict, dict):
        conflict = conflict.get(exc.diag.constraint_name or "")
    if verdict.kind == "conflict" and conflict is not None:
        return Conflict(*conflict)
    if verdict.kind == "unavailable":
        failure = StoreUnavailable(where, verdict.why, verdict.hint)
        if health is not None:
            health.report(failure)
        return failure
    return StoreError(f"The database refused a statement: {type(exc).__name__} ({exc.sqlstate}): {exc}")


async def migrate(db: psycopg.AsyncConnection[Any]) -> list[str]:
    """Bring the schema of `db` (a connection in autocommit mode) up to date, each migration and
    its record in one transaction, holding an advisory lock so that replicas starting together
    take turns; the names of the migrations applied. StoreError for a database from a newer
    release, or a migration that fails (nothing of it stays)."""
    await db.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        await db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
        )
        row = await (await db.execute("SELECT MAX(version) FROM schema_migrations")).fetchone()
        version = int(row[0] or 0) if row else 0
        applied = []
        for migration in migrations.pending(version, DIALECT):
            try:
                async with db.transaction():
                    # No parameters: the simple query protocol runs the file's statements in turn.
                    await db.execute(migration.sql.encode(), prepare=False)
                    await db.execute(
                        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)",
                        (migration.version, migration.name, int(time.time())),
                    )
            except psycopg.Error as exc:
                raise StoreError(f"Migration {migration.name} failed: {exc}") from exc
            applied.append(migration.name)
        return applied
    finally:
        await db.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))


class _Queries:
    """Every query of the contract. How statements reach the database is the subclasses': the
    store takes a pooled connection per call, a transaction uses its own and is aborted by the
    first statement that fails."""

    def _connection(self, conflict: Conflicts | None = None) -> AbstractAsyncContextManager[Any]:
        """A connection for one call's statements, all or nothing; errors inside the block come
        out translated (a Conflict with `conflict`'s rule and message)."""
        raise NotImplementedError

    async def _run(self, query: Query, args: Sequence[Any] = (), conflict: Conflicts | None = None) -> int:
        """Run one statement; the rows it changed."""
        async with self._connection(conflict) as db:
            return int((await db.execute(query, args)).rowcount)

    async def _all(self, query: Query, *args: Any) -> Rows:
        async with self._connection() as db:
            return list(await (await db.execute(query, args)).fetchall())

    async def _one(self, query: Query, *args: Any) -> tuple[Any, ...] | None:
        rows = await self._all(query, *args)
        return rows[0] if rows else None

    # -- users --------------------------------------------------------------------------------

    async def create_user(self, user: UserRecord, auth_key_hash: str) -> None:
        await self._run(
            "INSERT INTO users (id, email, is_admin, auth_key_hash, created_at) VALUES (%s, %s, %s, %s, %s)",
            (user.id, user.email, user.is_admin, auth_key_hash, user.created_at),
            conflict=("users.email", f"user {user.email} exists"),
        )

    async def user_by_email(self, email: str) -> UserRecord | None:
        row = await self._one(f"SELECT {_USER_COLUMNS} FROM users WHERE email = %s", email)
        return _user(row) if row else None

    async def user_by_auth_key(self, auth_key_hash: str) -> UserRecord | None:
        row = await self._one(f"SELECT {_USER_COLUMNS} FROM users WHERE auth_key_hash = %s", auth_key_hash)
        return _user(row) if row else None

    async def users(self) -> list[UserRecord]:
        return [_user(r) for r in await self._all(f"SELECT {_USER_COLUMNS} FROM users ORDER BY email")]

    async def set_auth_key(self, user_id: str, auth_key_hash: str, now: int) -> None:
        async with self._connection() as db:
            await db.execute("UPDATE users SET auth_key_hash = %s WHERE id = %s", (auth_key_hash, user_id))
            await db.execute(
                "UPDATE sessions SET revoked_at = %s WHERE user_id = %s AND revoked_at IS NULL", (now, user_id)
            )

    async def remove_user(self, user_id: str, now: int) -> list[str]:
        async with self._connection() as db:
            cur = await db.execute(
                "SELECT id FROM spaces WHERE owner_id = %s AND deleted_at IS NULL ORDER BY created_at, name, id",
                (user_id,),
            )
            owned = [r[0] for r in await cur.fetchall()]
            await db.execute("DELETE FROM users WHERE id = %s", (user_id,))
        return owned

    # -- sessions -----------------------------------------------------------------------------

    async def create_session(self, session: SessionRecord, token_hash: str) -> None:
        await self._run(
            "INSERT INTO sessions (id, user_id, token_hash, kind, client, created_at, expires_at, last_used_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
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
        row = await self._one(
            "SELECT s.id, s.user_id, s.kind, s.client, s.created_at, s.expires_at, s.last_used_at,"
            " u.id, u.email, u.is_admin, u.created_at"
            " FROM sessions s JOIN users u ON u.id = s.user_id"
            " WHERE s.token_hash = %s AND s.revoked_at IS NULL AND s.expires_at > %s",
            token_hash,
            now,
        )
        if row is None:
            return None
        return SessionRecord(*row[:7]), _user(row[7:])

    async def touch_session(self, session_id: str, now: int) -> None:
        await self._run("UPDATE sessions SET last_used_at = %s WHERE id = %s", (now, session_id))

    async def revoke_session(self, session_id: str, now: int) -> None:
        await self._run("UPDATE sessions SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL", (now, session_id))

    async def session_live(self, session_id: str, user_id: str, now: int) -> bool:
        # One indexed lookup per call (nothing memoized: a sign-out on another replica counts at once).
        row = await self._one(
            "SELECT 1 FROM sessions WHERE id = %s AND user_id = %s AND revoked_at IS NULL AND expires_at > %s",
            session_id,
            user_id,
            now,
        )
        return row is not None

    # -- one-time web sign-in links -----------------------------------------------------------

    async def add_web_link(self, token_hash: str, user_id: str, now: int, expires_at: int) -> None:
        async with self._connection() as db:
            await db.execute("DELETE FROM web_links WHERE expires_at < %s", (now - 86400,))  # keep the table small
            await db.execute(
                "INSERT INTO web_links (token_hash, user_id, created_at, expires_at) VALUES (%s, %s, %s, %s)",
                (token_hash, user_id, now, expires_at),
            )

    async def redeem_web_link(self, token_hash: str, now: int) -> UserRecord | None:
        # One conditional UPDATE: of two replicas spending the link at once, one updates no row.
        row = await self._one(
            f"WITH spent AS (UPDATE web_links SET used_at = %s"
            f" WHERE token_hash = %s AND used_at IS NULL AND expires_at > %s RETURNING user_id)"
            f" SELECT {_USER_COLUMNS} FROM users WHERE id = (SELECT user_id FROM spent)",
            now,
            token_hash,
            now,
        )
        return _user(row) if row else None

    # -- SSH keys -----------------------------------------------------------------------------

    async def add_ssh_key(self, key: SshKeyRecord) -> None:
        await self._run(
            "INSERT INTO ssh_keys (id, user_id, fingerprint, key_type, bits, public_key, comment, created_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (key.id, key.user_id, key.fingerprint, key.key_type, key.bits, key.public_key, key.comment, key.created_at),
            conflict=("ssh_keys.fingerprint", f"key {key.fingerprint} exists"),
        )

    async def ssh_keys(self, user_id: str) -> list[SshKeyRecord]:
        rows = await self._all(
            "SELECT id, user_id, fingerprint, key_type, bits, public_key, comment, created_at"
            " FROM ssh_keys WHERE user_id = %s ORDER BY created_at, comment, fingerprint",
            user_id,
        )
        return [SshKeyRecord(*r) for r in rows]

    async def remove_ssh_key(self, user_id: str, key_id: str) -> bool:
        return await self._run("DELETE FROM ssh_keys WHERE id = %s AND user_id = %s", (key_id, user_id)) > 0

    # -- Spaces -------------------------------------------------------------------------------

    async def create_space(self, space: SpaceRecord, share_user_ids: list[str]) -> None:
        conflicts = {
            "spaces_owner_name": ("spaces.name", f"space name {space.name} taken"),
            "spaces_key_container": ("spaces.container", f"container {space.container_name} has a Space"),
        }
        async with self._connection(conflicts) as db:
            await db.execute(
                "INSERT INTO spaces (id, owner_id, name, state, created_at, updated_at, space_key_id, container_name,"
                " template, compute_units, storage_units) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
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
            if share_user_ids:
                await db.execute(
                    "INSERT INTO space_shares (space_id, user_id, created_at)"
                    " SELECT %s, u, %s FROM unnest(%s::text[]) AS u",
                    (space.id, space.created_at, share_user_ids),
                )

    async def space(self, space_id: str) -> SpaceRecord | None:
        return (await self._spaces([space_id])).get(space_id)

    async def _spaces(self, space_ids: list[str]) -> dict[str, SpaceRecord]:
        """`space` of each of `space_ids` in one statement (those not found left out)."""
        rows = await self._all(f"SELECT {_SPACE_COLUMNS} FROM {_SPACE_FROM} WHERE s.id = ANY(%s)", space_ids)
        return {row[0]: SpaceRecord(*row) for row in rows}

    async def visible_spaces(self, user_id: str) -> list[SpaceRecord]:
        # UNION (not ALL) keeps a Space once when it reaches the user several ways (owner, share, groups).
        rows = await self._all(
            f"SELECT {_SPACE_COLUMNS} FROM {_SPACE_FROM} WHERE s.owner_id = %s AND s.deleted_at IS NULL"
            f" UNION SELECT {_SPACE_COLUMNS} FROM space_shares sh JOIN spaces s ON s.id = sh.space_id"
            " JOIN users u ON u.id = s.owner_id WHERE sh.user_id = %s AND s.deleted_at IS NULL"
            f" UNION SELECT {_SPACE_COLUMNS} FROM group_members gm"
            " JOIN space_group_shares gs ON gs.group_id = gm.group_id JOIN spaces s ON s.id = gs.space_id"
            " JOIN users u ON u.id = s.owner_id WHERE gm.user_id = %s AND s.deleted_at IS NULL"
            " ORDER BY 6, 4, 3, 1",
            user_id,
            user_id,
            user_id,
        )
        return [SpaceRecord(*r) for r in rows]

    async def is_shared_with(self, space_id: str, user_id: str) -> bool:
        row = await self._one(
            "SELECT 1 FROM space_shares WHERE space_id = %s AND user_id = %s"
            " UNION ALL SELECT 1 FROM space_group_shares gs JOIN group_members gm ON gm.group_id = gs.group_id"
            " WHERE gs.space_id = %s AND gm.user_id = %s LIMIT 1",
            space_id,
            user_id,
            space_id,
            user_id,
        )
        return row is not None

    async def shares(self, space_id: str) -> list[str]:
        return (await self.shares_of([space_id])).get(space_id, [])

    async def shares_of(self, space_ids: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {sid: [] for sid in space_ids}
        if not space_ids:
            return out
        rows = await self._all(
            "SELECT sh.space_id, u.email FROM space_shares sh JOIN users u ON u.id = sh.user_id"
            " WHERE sh.space_id = ANY(%s) ORDER BY u.email",
            list(space_ids),
        )
        for space_id, email in rows:
            out[space_id].append(email)
        return out

    async def update_shares(self, space_id: str, add: list[str], remove: list[str], now: int) -> None:
        async with self._connection() as db:
            if add:
                await db.execute(
                    "INSERT INTO space_shares (space_id, user_id, created_at)"
                    " SELECT %s, u, %s FROM unnest(%s::text[]) AS u ON CONFLICT DO NOTHING",
                    (space_id, now, add),
                )
            if remove:
                await db.execute(
                    "DELETE FROM space_shares WHERE space_id = %s AND user_id = ANY(%s)", (space_id, remove)
                )
            await db.execute("UPDATE spaces SET updated_at = %s WHERE id = %s", (now, space_id))

    async def delete_space(self, space_id: str, now: int) -> None:
        # The row stays as a tombstone so that a late bootstrap hears "deleted", not "unknown".
        async with self._connection() as db:
            await db.execute(
                "UPDATE spaces SET state = 'deleted', deleted_at = %s, updated_at = %s, agent_credential_hash = NULL"
                " WHERE id = %s AND deleted_at IS NULL",
                (now, now, space_id),
            )
            await db.execute(
                "UPDATE space_tokens SET revoked_at = %s WHERE space_id = %s AND revoked_at IS NULL", (now, space_id)
            )
            await db.execute("DELETE FROM space_shares WHERE space_id = %s", (space_id,))
            await db.execute("DELETE FROM shared_ports WHERE space_id = %s", (space_id,))  # their addresses are free
            await db.execute("DELETE FROM space_group_shares WHERE space_id = %s", (space_id,))

    # -- reusable Space keys ------------------------------------------------------------------

    async def create_space_key(self, key: SpaceKeyRecord, share_user_ids: list[str]) -> None:
        async with self._connection(conflict=("space_keys.name", f"Space key name {key.name} taken")) as db:
            await db.execute(
                "INSERT INTO space_keys (id, owner_id, name, key_hash, created_at, expires_at, template)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (key.id, key.owner_id, key.name, key.key_hash, key.created_at, key.expires_at, key.template),
            )
            if share_user_ids:
                await db.execute(
                    "INSERT INTO space_key_shares (key_id, user_id) SELECT %s, u FROM unnest(%s::text[]) AS u",
                    (key.id, share_user_ids),
                )

    async def space_keys(self, owner_id: str) -> list[SpaceKeyRecord]:
        rows = await self._all(
            f"SELECT {_KEY_COLUMNS} FROM space_keys WHERE owner_id = %s ORDER BY created_at, name, id", owner_id
        )
        return [SpaceKeyRecord(*r) for r in rows]

    async def space_key_by_hash(self, key_hash: str) -> SpaceKeyRecord | None:
        row = await self._one(f"SELECT {_KEY_COLUMNS} FROM space_keys WHERE key_hash = %s", key_hash)
        return SpaceKeyRecord(*row) if row else None

    async def space_key_shares(self, key_ids: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {key_id: [] for key_id in key_ids}
        if not key_ids:
            return out
        rows = await self._all(
            "SELECT ks.key_id, u.email FROM space_key_shares ks JOIN users u ON u.id = ks.user_id"
            " WHERE ks.key_id = ANY(%s) ORDER BY u.email",
            list(key_ids),
        )
        for key_id, email in rows:
            out[key_id].append(email)
        return out

    async def space_key_user_ids(self, key_id: str) -> list[str]:
        return [r[0] for r in await self._all("SELECT user_id FROM space_key_shares WHERE key_id = %s", key_id)]

    async def revoke_space_key(self, key_id: str, now: int) -> None:
        await self._run("UPDATE space_keys SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL", (now, key_id))

    async def spaces_of_key(self, key_id: str) -> list[SpaceRecord]:
        rows = await self._all(
            f"SELECT {_SPACE_COLUMNS} FROM {_SPACE_FROM} WHERE s.space_key_id = %s AND s.deleted_at IS NULL"
            " ORDER BY s.created_at, s.name, s.id",
            key_id,
        )
        return [SpaceRecord(*r) for r in rows]

    async def space_for_container(self, key_id: str, container_name: str) -> SpaceRecord | None:
        row = await self._one(
            f"SELECT {_SPACE_COLUMNS} FROM {_SPACE_FROM}"
            " WHERE s.space_key_id = %s AND s.container_name = %s AND s.deleted_at IS NULL",
            key_id,
            container_name,
        )
        return SpaceRecord(*row) if row else None

    async def register_keyed_agent(
        self, key_id: str, space_id: str, instance_id: str, facts: str, credential_hash: str, now: int
    ) -> None:
        async with self._connection() as db:
            await db.execute(
                "UPDATE spaces SET instance_id = %s, facts = %s, agent_credential_hash = %s, state = 'starting',"
                " ssh = NULL, updated_at = %s, last_seen_at = %s WHERE id = %s AND deleted_at IS NULL",
                (instance_id, facts, credential_hash, now, now, space_id),
            )
            await db.execute("UPDATE space_keys SET uses = uses + 1, last_used_at = %s WHERE id = %s", (now, key_id))

    # -- Space tokens and the agent -----------------------------------------------------------

    async def add_token(self, token: TokenRecord) -> None:
        await self._run(
            "INSERT INTO space_tokens (jti, space_id, issued_by, issued_at, expires_at) VALUES (%s, %s, %s, %s, %s)",
            (token.jti, token.space_id, token.issued_by, token.issued_at, token.expires_at),
        )

    async def token(self, jti: str) -> TokenRecord | None:
        row = await self._one(
            "SELECT jti, space_id, issued_by, issued_at, expires_at, used_instance_id, used_at, revoked_at"
            " FROM space_tokens WHERE jti = %s",
            jti,
        )
        return TokenRecord(*row) if row else None

    async def register_agent(
        self, jti: str, space_id: str, instance_id: str, facts: str, credential_hash: str, now: int
    ) -> bool:
        # The claim is one conditional UPDATE whose row count decides: under READ COMMITTED a
        # second replica's UPDATE of the same row waits for the first to commit, re-reads the
        # row, no longer matches, and updates nothing.
        async with self._connection() as db:
            claimed = (
                await db.execute(
                    "UPDATE space_tokens SET used_instance_id = %s, used_at = COALESCE(used_at, %s)"
                    " WHERE jti = %s AND space_id = %s AND revoked_at IS NULL"
                    " AND (used_instance_id IS NULL OR used_instance_id = %s)"
                    " AND EXISTS (SELECT 1 FROM spaces WHERE id = %s AND deleted_at IS NULL)",
                    (instance_id, now, jti, space_id, instance_id, space_id),
                )
            ).rowcount
            if claimed != 1:
                return False
            await db.execute(
                "UPDATE spaces SET instance_id = %s, facts = %s, agent_credential_hash = %s, state = 'starting',"
                " updated_at = %s, last_seen_at = %s WHERE id = %s",
                (instance_id, facts, credential_hash, now, now, space_id),
            )
        return True

    async def space_by_credential(self, credential_hash: str) -> SpaceRecord | None:
        return (await self._spaces_by_credential([credential_hash])).get(credential_hash)

    async def _spaces_by_credential(self, credential_hashes: list[str]) -> dict[str, SpaceRecord]:
        """`space_by_credential` of each of `credential_hashes` in one statement."""
        rows = await self._all(
            f"SELECT s.agent_credential_hash, {_SPACE_COLUMNS} FROM {_SPACE_FROM}"
            " WHERE s.agent_credential_hash = ANY(%s) AND s.deleted_at IS NULL",
            credential_hashes,
        )
        return {row[0]: SpaceRecord(*row[1:]) for row in rows}

    async def update_facts(self, space_id: str, facts: str, now: int) -> None:
        await self._run("UPDATE spaces SET facts = %s, last_seen_at = %s WHERE id = %s", (facts, now, space_id))

    async def authorized_keys(self, space_id: str) -> list[AuthorizedKeyRow]:
        return (await self._authorized_keys_of([space_id])).get(space_id, [])

    async def _authorized_keys_of(self, space_ids: list[str]) -> dict[str, list[AuthorizedKeyRow]]:
        """`authorized_keys` of each of `space_ids` in one statement (those with none left out)."""
        rows = await self._all(
            "SELECT s.id, u.email, 'owner' AS role, k.public_key, k.fingerprint FROM spaces s"
            " JOIN users u ON u.id = s.owner_id JOIN ssh_keys k ON k.user_id = u.id"
            " WHERE s.id = ANY(%s) AND s.deleted_at IS NULL"
            " UNION"
            " SELECT sh.space_id, u.email, 'shared', k.public_key, k.fingerprint FROM space_shares sh"
            " JOIN users u ON u.id = sh.user_id JOIN ssh_keys k ON k.user_id = u.id"
            " WHERE sh.space_id = ANY(%s)"
            " UNION"
            " SELECT gs.space_id, u.email, 'shared', k.public_key, k.fingerprint FROM space_group_shares gs"
            " JOIN spaces s ON s.id = gs.space_id JOIN group_members gm ON gm.group_id = gs.group_id"
            " JOIN users u ON u.id = gm.user_id JOIN ssh_keys k ON k.user_id = u.id"
            " WHERE gs.space_id = ANY(%s) AND gm.user_id <> s.owner_id"
            " ORDER BY 1, 3, 2, 5",
            space_ids,
            space_ids,
            space_ids,
        )
        found: dict[str, list[AuthorizedKeyRow]] = {}
        for space_id, *row in rows:
            found.setdefault(space_id, []).append(AuthorizedKeyRow(*row))
        return found

    async def heartbeat(
        self, space_id: str, state: SpaceState, now: int, facts: str | None, ssh: str | None = None
    ) -> None:
        await self._run(
            "UPDATE spaces SET state = %s, last_seen_at = %s, facts = COALESCE(%s, facts), ssh = COALESCE(%s, ssh),"
            " updated_at = CASE WHEN state = %s THEN updated_at ELSE %s END"
            " WHERE id = %s AND deleted_at IS NULL",
            (state, now, facts, ssh, state, now, space_id),
        )

    async def record_seen(self, seen: dict[str, int]) -> None:
        if not seen:
            return
        # One statement for every agent heard since the last sweep (10,000 agents: one round trip).
        await self._run(
            "UPDATE spaces s SET last_seen_at = GREATEST(COALESCE(s.last_seen_at, 0), v.at)"
            " FROM unnest(%s::text[], %s::bigint[]) AS v(id, at) WHERE s.id = v.id",
            (list(seen), list(seen.values())),
        )

    async def stop_silent_spaces(self, seen_before: int, now: int) -> list[str]:
        rows = await self._all(
            "UPDATE spaces SET state = 'stopped', updated_at = %s"
            " WHERE state IN ('starting', 'running', 'stopping') AND deleted_at IS NULL AND last_seen_at < %s"
            " RETURNING id",
            now,
            seen_before,
        )
        return [r[0] for r in rows]

    async def set_desired_state(self, space_id: str, desired: DesiredState, state: SpaceState, now: int) -> None:
        # The agent reports sshd's health afresh once it has acted; until then it is unknown.
        await self._run(
            "UPDATE spaces SET desired_state = %s, state = %s, ssh = NULL, updated_at = %s"
            " WHERE id = %s AND deleted_at IS NULL",
            (desired, state, now, space_id),
        )

    # -- the connection log (every stream) ---------------------------------------------------

    async def open_stream(self, stream: StreamRecord) -> None:
        await self._run(
            "INSERT INTO streams (id, space_id, user_id, email, client_address, opened_at, kind, replica_id)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
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
        await self._run(
            "UPDATE streams SET closed_at = %s, bytes_in = %s, bytes_out = %s, close_reason = %s"
            " WHERE id = %s AND closed_at IS NULL",
            (now, bytes_in, bytes_out, reason, stream_id),
        )

    async def open_streams(self, space_id: str) -> list[StreamRecord]:
        rows = await self._all(
            "SELECT id, space_id, user_id, email, client_address, opened_at, closed_at, bytes_in, bytes_out,"
            " close_reason, kind, replica_id FROM streams"
            " WHERE space_id = %s AND closed_at IS NULL ORDER BY opened_at, email, id",
            space_id,
        )
        return [StreamRecord(*r) for r in rows]

    async def net_bytes(self, space_ids: list[str], since: int) -> dict[str, int]:
        out = dict.fromkeys(space_ids, 0)
        if space_ids:
            for space_id, total in await self._all(
                "SELECT space_id, SUM(bytes_in + bytes_out) FROM streams"
                " WHERE space_id = ANY(%s) AND closed_at >= %s GROUP BY space_id",
                list(space_ids),
                since,
            ):
                out[space_id] = int(total)
        return out

    async def close_dangling_streams(self, now: int, keep: Collection[str] = ()) -> None:
        # A broker that stopped with streams open never logged their end; they ended with it.
        await self._run(
            "UPDATE streams SET closed_at = %s, close_reason = 'broker restarted'"
            " WHERE closed_at IS NULL AND NOT (replica_id = ANY(%s))",
            (now, list(keep)),
        )

    # -- shared ports -------------------------------------------------------------------------

    async def user(self, user_id: str) -> UserRecord | None:
        row = await self._one(f"SELECT {_USER_COLUMNS} FROM users WHERE id = %s", user_id)
        return _user(row) if row else None

    async def user_handle(self, user_id: str) -> str | None:
        row = await self._one("SELECT handle FROM users WHERE id = %s", user_id)
        return row[0] if row else None

    async def set_user_handle(self, user_id: str, handle: str) -> bool:
        try:
            await self._run(
                "UPDATE users SET handle = %s WHERE id = %s AND handle IS NULL",
                (handle, user_id),
                conflict=("users.handle", f"handle {handle} taken"),
            )
        except Conflict:
            return False  # inside a transaction it is aborted now, as the contract says
        return True

    async def shared_ports(self, space_id: str) -> list[PortRecord]:
        rows = await self._all(
            f"SELECT {_PORT_COLUMNS} FROM shared_ports p WHERE p.space_id = %s ORDER BY p.port", space_id
        )
        return [PortRecord(*r) for r in rows]

    async def shared_port(self, address: str) -> PortRecord | None:
        row = await self._one(
            f"SELECT {_PORT_COLUMNS} FROM shared_ports p JOIN spaces s ON s.id = p.space_id"
            " WHERE p.address = %s AND s.deleted_at IS NULL",
            address,
        )
        return PortRecord(*row) if row else None

    async def share_port(self, port: PortRecord) -> None:
        await self._run(
            "INSERT INTO shared_ports (space_id, port, level, label, address, created_at, updated_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (space_id, port)"
            " DO UPDATE SET level = excluded.level, label = excluded.label, updated_at = excluded.updated_at",
            (port.space_id, port.port, port.level, port.label, port.address, port.created_at, port.updated_at),
            conflict=("shared_ports.address", f"app address {port.address} taken"),
        )

    async def unshare_port(self, space_id: str, port: int) -> PortRecord | None:
        row = await self._one(
            "DELETE FROM shared_ports WHERE space_id = %s AND port = %s"
            " RETURNING space_id, port, level, label, address, created_at, updated_at",
            space_id,
            port,
        )
        return PortRecord(*row) if row else None

    async def claim_ticket(self, nonce: str, expires_at: int, now: int) -> bool:
        async with self._connection() as db:
            await db.execute("DELETE FROM used_tickets WHERE expires_at <= %s", (now,))
            cur = await db.execute(
                "INSERT INTO used_tickets (nonce, expires_at) VALUES (%s, %s) ON CONFLICT (nonce) DO NOTHING",
                (nonce, expires_at),
            )
            return int(cur.rowcount) > 0

    # -- token signing keys -------------------------------------------------------------------

    async def signing_keys(self) -> list[SealedKeyRecord]:
        rows = await self._all("SELECT kid, created_at, sealed FROM signing_keys ORDER BY created_at, kid")
        return [SealedKeyRecord(*r) for r in rows]

    async def add_signing_key(self, key: SealedKeyRecord) -> None:
        await self._run(
            "INSERT INTO signing_keys (kid, created_at, sealed) VALUES (%s, %s, %s)",
            (key.kid, key.created_at, key.sealed),
            conflict=("signing_keys.kid", f"signing key {key.kid} exists"),
        )

    async def remove_signing_keys(self, kids: list[str]) -> None:
        if kids:
            await self._run("DELETE FROM signing_keys WHERE kid = ANY(%s)", (kids,))

    # -- templates ----------------------------------------------------------------------------

    async def add_template(self, template: TemplateRecord) -> None:
        async with self._connection(conflict=("templates.name", f"template {template.name} exists")) as db:
            if template.is_default:
                await db.execute("UPDATE templates SET is_default = FALSE WHERE is_default")
            await db.execute(
                f"INSERT INTO templates ({_TEMPLATE_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)",
                (
                    template.name,
                    template.description,
                    template.compute_units,
                    template.storage_units,
                    template.is_default,
                    template.created_at,
                ),
            )

    async def templates(self) -> list[TemplateRecord]:
        return [_template(r) for r in await self._all(f"SELECT {_TEMPLATE_COLUMNS} FROM templates ORDER BY name")]

    async def template(self, name: str) -> TemplateRecord | None:
        row = await self._one(f"SELECT {_TEMPLATE_COLUMNS} FROM templates WHERE name = %s", name)
        return _template(row) if row else None

    async def default_template(self) -> TemplateRecord | None:
        row = await self._one(f"SELECT {_TEMPLATE_COLUMNS} FROM templates WHERE is_default")
        return _template(row) if row else None

    async def set_default_template(self, name: str) -> bool:
        async with self._connection() as db:
            if await (await db.execute("SELECT 1 FROM templates WHERE name = %s", (name,))).fetchone() is None:
                return False
            await db.execute("UPDATE templates SET is_default = FALSE WHERE is_default AND name <> %s", (name,))
            await db.execute("UPDATE templates SET is_default = TRUE WHERE name = %s", (name,))
        return True

    async def remove_template(self, name: str) -> bool:
        return await self._run("DELETE FROM templates WHERE name = %s", (name,)) > 0

    # -- quotas -------------------------------------------------------------------------------

    async def set_user_quota(self, user_id: str, limits: Limits) -> None:
        await self._run(
            "UPDATE users SET quota_spaces = %s, quota_compute = %s, quota_storage = %s WHERE id = %s",
            (limits.spaces, limits.compute, limits.storage, user_id),
        )

    async def set_group_quota(self, group_id: str, limits: Limits) -> None:
        await self._run(
            "UPDATE user_groups SET quota_spaces = %s, quota_compute = %s, quota_storage = %s WHERE id = %s",
            (limits.spaces, limits.compute, limits.storage, group_id),
        )

    async def quotas_of(self, user_id: str) -> tuple[Limits, list[tuple[str, Limits]]]:
        # One statement (a round trip less in every quota check): the user's own row first, then
        # their groups' by name.
        rows = await self._all(
            "SELECT 0, '', quota_spaces, quota_compute, quota_storage FROM users WHERE id = %s"
            " UNION ALL SELECT 1, g.name, g.quota_spaces, g.quota_compute, g.quota_storage FROM group_members gm"
            " JOIN user_groups g ON g.id = gm.group_id WHERE gm.user_id = %s ORDER BY 1, 2",
            user_id,
            user_id,
        )
        own = next((Limits(*r[2:]) for r in rows if r[0] == 0), Limits())
        return own, [(r[1], Limits(*r[2:])) for r in rows if r[0] == 1]

    async def usage(self, user_id: str) -> Usage:
        # The user's row locked first (held to the end of a transaction): another transaction's
        # `usage` of the same user waits here, then counts under READ COMMITTED what was
        # committed before it got the lock, so two racing requests cannot both slip under a limit.
        async with self._connection() as db:
            await db.execute("SELECT 1 FROM users WHERE id = %s FOR UPDATE", (user_id,))
            cur = await db.execute(
                "SELECT COUNT(*),"
                f" COALESCE(SUM(CASE WHEN state IN {_COMPUTE_STATES} THEN compute_units ELSE 0 END), 0),"
                " COALESCE(SUM(storage_units), 0)"
                " FROM spaces WHERE owner_id = %s AND deleted_at IS NULL",
                (user_id,),
            )
            row = await cur.fetchone()
        assert row is not None  # an aggregate always answers one row
        return Usage(int(row[0]), int(row[1]), int(row[2]))

    # -- groups -------------------------------------------------------------------------------

    async def create_group(self, group: GroupRecord) -> None:
        await self._run(
            f"INSERT INTO user_groups ({_GROUP_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)",
            (group.id, group.name, group.created_at, group.quota.spaces, group.quota.compute, group.quota.storage),
            conflict=("groups.name", f"group {group.name} exists"),
        )

    async def _groups(self, where: str, *args: Any) -> list[GroupRecord]:
        async with self._connection() as db:
            cur = await db.execute(f"SELECT {_GROUP_COLUMNS} FROM user_groups WHERE {where} ORDER BY name", args)
            rows = await cur.fetchall()
            members: dict[str, list[str]] = {r[0]: [] for r in rows}
            if rows:
                cur = await db.execute(
                    "SELECT gm.group_id, u.email FROM group_members gm JOIN users u ON u.id = gm.user_id"
                    " WHERE gm.group_id = ANY(%s) ORDER BY u.email",
                    (list(members),),
                )
                for group_id, email in await cur.fetchall():
                    members[group_id].append(email)
        return [GroupRecord(r[0], r[1], r[2], Limits(*r[3:6]), tuple(members[r[0]])) for r in rows]

    async def groups(self) -> list[GroupRecord]:
        return await self._groups("TRUE")

    async def group(self, name: str) -> GroupRecord | None:
        found = await self._groups("name = %s", name)
        return found[0] if found else None

    async def remove_group(self, group_id: str) -> None:
        await self._run("DELETE FROM user_groups WHERE id = %s", (group_id,))

    async def add_group_members(self, group_id: str, user_ids: list[str], now: int) -> None:
        if user_ids:
            await self._run(
                "INSERT INTO group_members (group_id, user_id, created_at)"
                " SELECT %s, u, %s FROM unnest(%s::text[]) AS u ON CONFLICT DO NOTHING",
                (group_id, now, user_ids),
            )

    async def remove_group_members(self, group_id: str, user_ids: list[str]) -> None:
        await self._run(
            "DELETE FROM group_members WHERE group_id = %s AND user_id = ANY(%s)", (group_id, list(user_ids))
        )

    async def update_group_shares(self, space_id: str, add: list[str], remove: list[str], now: int) -> None:
        async with self._connection() as db:
            if add:
                await db.execute(
                    "INSERT INTO space_group_shares (space_id, group_id, created_at)"
                    " SELECT %s, g, %s FROM unnest(%s::text[]) AS g ON CONFLICT DO NOTHING",
                    (space_id, now, add),
                )
            if remove:
                await db.execute(
                    "DELETE FROM space_group_shares WHERE space_id = %s AND group_id = ANY(%s)", (space_id, remove)
                )
            await db.execute("UPDATE spaces SET updated_at = %s WHERE id = %s", (now, space_id))

    async def group_shares_of(self, space_ids: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {sid: [] for sid in space_ids}
        if space_ids:
            for space_id, name in await self._all(
                "SELECT gs.space_id, g.name FROM space_group_shares gs JOIN user_groups g ON g.id = gs.group_id"
                " WHERE gs.space_id = ANY(%s) ORDER BY g.name",
                list(space_ids),
            ):
                out[space_id].append(name)
        return out

    async def spaces_shared_with_group(self, group_id: str) -> list[SpaceRecord]:
        rows = await self._all(
            f"SELECT {_SPACE_COLUMNS} FROM space_group_shares gs JOIN spaces s ON s.id = gs.space_id"
            " JOIN users u ON u.id = s.owner_id WHERE gs.group_id = %s AND s.deleted_at IS NULL ORDER BY 6, 4, 3, 1",
            group_id,
        )
        return [SpaceRecord(*r) for r in rows]

    # -- access requests ----------------------------------------------------------------------

    async def add_access_request(self, request: AccessRequestRecord, device_code_hash: str) -> None:
        await self._run(
            "INSERT INTO access_requests (id, email, message, client_address, device_code_hash, state, created_at,"
            " expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
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
        rows = await self._all(
            f"SELECT {_REQUEST_COLUMNS} FROM access_requests WHERE %s::text IS NULL OR state = %s"
            " ORDER BY created_at, email, id",
            state,
            state,
        )
        return [AccessRequestRecord(*r) for r in rows]

    async def access_request(self, request_id: str) -> AccessRequestRecord | None:
        row = await self._one(f"SELECT {_REQUEST_COLUMNS} FROM access_requests WHERE id = %s", request_id)
        return AccessRequestRecord(*row) if row else None

    async def access_request_by_device_code(self, device_code_hash: str) -> AccessRequestRecord | None:
        row = await self._one(
            f"SELECT {_REQUEST_COLUMNS} FROM access_requests WHERE device_code_hash = %s", device_code_hash
        )
        return AccessRequestRecord(*row) if row else None

    async def count_access_requests(self, email: str, client_address: str, since: int) -> tuple[int, int]:
        row = await self._one(
            "SELECT (SELECT COUNT(*) FROM access_requests WHERE email = %s AND created_at >= %s),"
            " (SELECT COUNT(*) FROM access_requests WHERE client_address = %s AND created_at >= %s)",
            email,
            since,
            client_address,
            since,
        )
        assert row is not None  # two scalar subqueries always answer one row
        return int(row[0]), int(row[1])

    async def decide_access_request(
        self, request_id: str, state: str, by: str, now: int, user_id: str | None = None, space_id: str | None = None
    ) -> bool:
        changed = await self._run(
            "UPDATE access_requests SET state = %s, decided_by = %s, decided_at = %s, user_id = %s, space_id = %s"
            " WHERE id = %s AND state = 'pending' AND expires_at > %s",
            (state, by, now, user_id, space_id, request_id, now),
        )
        return changed == 1

    async def claim_access_request(self, request_id: str, now: int) -> bool:
        changed = await self._run(
            "UPDATE access_requests SET state = 'claimed', last_polled_at = %s WHERE id = %s AND state = 'approved'",
            (now, request_id),
        )
        return changed == 1

    async def touch_access_request(self, request_id: str, now: int) -> None:
        await self._run("UPDATE access_requests SET last_polled_at = %s WHERE id = %s", (now, request_id))

    # -- the outbox ---------------------------------------------------------------------------

    async def outbox_put(self, channel: str, payload: bytes, now: int) -> None:
        # Writers take turns until they commit: ids are handed out in the order they become
        # visible, so no reader passes an id whose message is still to commit (a sequence alone
        # would let a later id commit first).
        async with self._connection() as db:
            await db.execute("SELECT pg_advisory_xact_lock(%s)", (OUTBOX_LOCK,))
            await db.execute(
                "INSERT INTO bus_outbox (channel, payload, created_at) VALUES (%s, %s, %s)", (channel, payload, now)
            )

    async def outbox_after(self, after: int, limit: int) -> list[tuple[int, str, bytes]]:
        rows = await self._all(
            "SELECT id, channel, payload FROM bus_outbox WHERE id > %s ORDER BY id LIMIT %s", after, limit
        )
        return [(int(r[0]), str(r[1]), bytes(r[2])) for r in rows]

    async def outbox_newest(self) -> int:
        row = await self._one("SELECT coalesce(max(id), 0) FROM bus_outbox")
        return int(row[0]) if row else 0

    async def outbox_trim(self, before: int) -> None:
        await self._run("DELETE FROM bus_outbox WHERE created_at < %s", (before,))

    # -- replicas -----------------------------------------------------------------------------

    async def beat_replica(self, replica: ReplicaRecord) -> bool:
        async with self._connection() as db:
            moved = (
                await db.execute(
                    "UPDATE replicas SET address = %s, seen_at = %s WHERE id = %s",
                    (replica.address, replica.seen_at, replica.id),
                )
            ).rowcount
            if not moved:
                await db.execute(
                    "INSERT INTO replicas (id, address, started_at, seen_at) VALUES (%s, %s, %s, %s)"
                    " ON CONFLICT (id) DO UPDATE SET address = excluded.address, seen_at = excluded.seen_at",
                    (replica.id, replica.address, replica.started_at, replica.seen_at),
                )
        return bool(moved)

    async def live_replicas(self, seen_since: int) -> list[ReplicaRecord]:
        rows = await self._all(f"SELECT {_REPLICA_COLUMNS} FROM replicas WHERE seen_at >= %s ORDER BY id", seen_since)
        return [ReplicaRecord(*r) for r in rows]

    async def remove_replica(self, replica_id: str) -> None:
        async with self._connection() as db:
            await db.execute("DELETE FROM agent_channels WHERE replica_id = %s", (replica_id,))
            await db.execute("DELETE FROM replicas WHERE id = %s", (replica_id,))

    async def forget_replicas(self, seen_before: int) -> list[str]:
        async with self._connection() as db:
            rows = await (
                await db.execute("DELETE FROM replicas WHERE seen_at < %s RETURNING id", (seen_before,))
            ).fetchall()
            gone = sorted(r[0] for r in rows)
            if gone:
                await db.execute("DELETE FROM agent_channels WHERE replica_id = ANY(%s)", (gone,))
        return gone

    async def hold_agent_channel(self, space_id: str, replica_id: str, now: int) -> None:
        await self._run(
            "INSERT INTO agent_channels (space_id, replica_id, attached_at) VALUES (%s, %s, %s)"
            " ON CONFLICT (space_id) DO UPDATE SET replica_id = excluded.replica_id,"
            " attached_at = excluded.attached_at, terminals = NULL, listening = NULL",
            (space_id, replica_id, now),
        )

    async def release_agent_channel(self, space_id: str, replica_id: str) -> None:
        await self._run("DELETE FROM agent_channels WHERE space_id = %s AND replica_id = %s", (space_id, replica_id))

    async def report_agent(self, space_id: str, replica_id: str, terminals: str, listening: str) -> None:
        await self._run(
            "UPDATE agent_channels SET terminals = %s, listening = %s WHERE space_id = %s AND replica_id = %s",
            (terminals, listening, space_id, replica_id),
        )

    async def agent_channel(self, space_id: str) -> AgentChannelRecord | None:
        row = await self._one(
            "SELECT r.id, r.address, r.started_at, r.seen_at, c.terminals, c.listening, c.attached_at"
            " FROM agent_channels c JOIN replicas r ON r.id = c.replica_id WHERE c.space_id = %s",
            space_id,
        )
        return AgentChannelRecord(space_id, ReplicaRecord(*row[:4]), row[4], row[5], int(row[6])) if row else None

    # -- audit --------------------------------------------------------------------------------

    async def audit(self, now: int, actor: str, action: str, target: str, detail: str = "") -> None:
        await self._run(
            "INSERT INTO audit_log (at, actor, action, target, detail) VALUES (%s, %s, %s, %s, %s)",
            (now, actor, action, target, detail),
        )

    async def audit_log(
        self, *, limit: int, since: int | None = None, actor: str = "", action: str = "", target: str = ""
    ) -> list[AuditRecord]:
        where: list[str] = ["TRUE"]
        args: list[object] = []
        if since is not None:
            where.append("at >= %s")
            args.append(since)
        if actor:
            where.append("actor = %s")
            args.append(actor)
        if action:
            where.append("(action = %s OR left(action, %s) = %s)")
            args += [action, len(action) + 1, action + "."]
        if target:
            where.append("target = %s")
            args.append(target)
        rows = await self._all(
            "SELECT id, at, actor, action, target, detail FROM audit_log"
            f" WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT %s",
            *args,
            limit,
        )
        return [AuditRecord(*r) for r in reversed(rows)]


class PostgresTransaction(_Queries):
    """Calls grouped into one commit on one connection (or, nested, a savepoint on it)."""

    def __init__(self, db: psycopg.AsyncConnection[Any], store: PostgresStore) -> None:
        self._db = db
        self._store = store
        self.aborted: BaseException | None = None  # the failure that aborted it
        self.finished = False

    def _check(self) -> None:
        if self.finished:
            raise StoreError("The transaction is over: its block has ended.")
        if self.aborted is not None:
            raise TransactionAborted(
                f"The transaction was aborted by an earlier failure ({self.aborted!r}); it can only roll back."
            ) from self.aborted

    @asynccontextmanager
    async def _connection(self, conflict: Conflicts | None = None) -> AsyncIterator[Any]:
        self._check()
        try:
            yield self._db
        except psycopg.Error as exc:
            self.aborted = exc
            raise self._store.translate(exc, conflict) from exc
        except BaseException as exc:
            self.aborted = exc
            raise

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTransaction]:
        """A savepoint: its block's changes are undone alone when it raises."""
        self._check()
        inner = PostgresTransaction(self._db, self._store)
        try:
            async with self._db.transaction():  # SAVEPOINT; ROLLBACK TO it if the block raises
                yield inner
                if inner.aborted is not None:
                    raise TransactionAborted(
                        f"The savepoint was aborted by an earlier failure ({inner.aborted!r}) and rolled back."
                    ) from inner.aborted
        except psycopg.Error as exc:  # the savepoint itself failed: the connection is gone, say
            self.aborted = exc
            raise self._store.translate(exc) from exc
        finally:
            inner.finished = True

    # -- writing every row, for moving data in (broker/store/move.py) --------------------------

    async def schema_version(self) -> int:
        rows = await self._all("SELECT MAX(version) FROM schema_migrations")
        return int(rows[0][0] or 0)

    async def tables(self) -> list[str]:
        rows = await self._all(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
            " AND table_type = 'BASE TABLE' AND table_name != 'schema_migrations' ORDER BY table_name"
        )
        return [r[0] for r in rows]

    async def columns(self, table: str) -> dict[str, str]:
        """`table`'s columns and their types (`boolean`, `bigint`, `text`, …)."""
        rows = await self._all(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
            table,
        )
        return {name: kind for name, kind in rows}

    async def count(self, table: str) -> int:
        rows = await self._all(sql.SQL("SELECT COUNT(*) FROM {}").format(sql.Identifier(table)))
        return int(rows[0][0])

    async def empty(self, tables: list[str]) -> None:
        async with self._connection() as db:
            await db.execute(sql.SQL("TRUNCATE {} CASCADE").format(sql.SQL(", ").join(map(sql.Identifier, tables))))

    async def copy_rows(self, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        """Append `rows` (values of `columns`) to `table` with COPY."""
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        async with self._connection() as db, db.cursor().copy(statement) as copy:
            for row in rows:
                await copy.write_row(row)

    async def restart_identities(self) -> None:
        """Move every identity column's sequence past the largest value copied in."""
        async with self._connection() as db:
            cur = await db.execute(
                "SELECT table_name, column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND is_identity = 'YES'"
            )
            for table, column in await cur.fetchall():
                await db.execute(
                    sql.SQL(
                        "SELECT setval(pg_get_serial_sequence(%s, %s), GREATEST(MAX({}), 1), MAX({}) IS NOT NULL)"
                        " FROM {}"
                    ).format(sql.Identifier(column), sql.Identifier(column), sql.Identifier(table)),
                    (table, column),
                )


class PostgresStore(_Queries):
    """A pool of connections to one PostgreSQL database; `open` makes one in the running loop."""

    def __init__(self, url: str, pool: psycopg_pool.AsyncConnectionPool[Any], applied: list[str]) -> None:
        self.url = url
        self.applied = applied
        self.where = describe(url)
        self.health = Health()
        self._pool = pool
        # The agents' hot path (every channel's connect and heartbeat): lookups that arrive
        # together share one statement (broker.store.batching); a transaction's stay its own.
        self._batched_spaces = Batched(self._spaces)
        self._batched_credentials = Batched(self._spaces_by_credential)
        self._batched_keys = Batched(self._authorized_keys_of)
        self._grouped_holds: Grouped[tuple[str, str, int]] = Grouped(self._hold_agent_channels)
        self._grouped_beats: Grouped[tuple[str, str, int, str | None, str | None]] = Grouped(self._heartbeats)
        self._grouped_audit: Grouped[tuple[int, str, str, str, str]] = Grouped(self._audits)

    @classmethod
    async def open(cls, url: str, *, pool_max: int = POOL_MAX) -> PostgresStore:
        """Connect, migrate, and open a pool, in the running event loop. StoreUnavailable when the
        server cannot be reached or refuses the broker; StoreError when its schema is from a
        newer release or a migration fails."""
        where = describe(url)
        try:
            async with await psycopg.AsyncConnection.connect(
                url, autocommit=True, connect_timeout=int(CONNECT_TIMEOUT)
            ) as db:
                applied = await migrate(db)
        except psycopg.Error as exc:
            raise _unavailable_or(exc, where) from exc
        pool = new_pool(url, name="pair-broker", max_size=pool_max, timeout=CONNECT_TIMEOUT)
        try:
            await pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except psycopg.Error as exc:
            await pool.close()
            raise _unavailable_or(exc, where) from exc
        return cls(url, pool, applied)

    def translate(self, exc: psycopg.Error, conflict: Conflicts | None = None) -> StoreError:
        return translate(exc, self.where, self.health, conflict)

    @asynccontextmanager
    async def _lend(self) -> AsyncIterator[Any]:
        """A pooled connection. Waiting for one is bounded by CONNECT_TIMEOUT while the pool
        cannot fill (the server unreachable: PoolTimeout, which `translate` makes
        StoreUnavailable), by BUSY_TIMEOUT while every connection it has made is lent out
        (the server answers, the broker is merely busy: a storm of agents connecting must
        not be refused for a queue that moves)."""
        started = time.monotonic()
        while True:
            try:
                conn = await self._pool.getconn(timeout=CONNECT_TIMEOUT)
                break
            except psycopg_pool.PoolTimeout:
                stats = self._pool.get_stats()
                busy = stats.get("pool_size", 0) >= (self._pool.max_size or 0) and not stats.get("pool_available")
                if not busy or time.monotonic() - started > BUSY_TIMEOUT:
                    raise
        try:
            yield conn
        finally:
            await self._pool.putconn(conn)

    async def space(self, space_id: str) -> SpaceRecord | None:
        return await self._batched_spaces.get(space_id)

    async def space_by_credential(self, credential_hash: str) -> SpaceRecord | None:
        return await self._batched_credentials.get(credential_hash)

    async def authorized_keys(self, space_id: str) -> list[AuthorizedKeyRow]:
        return list(await self._batched_keys.get(space_id) or ())

    async def hold_agent_channel(self, space_id: str, replica_id: str, now: int) -> None:
        await self._grouped_holds.run((space_id, replica_id, now))

    async def heartbeat(
        self, space_id: str, state: SpaceState, now: int, facts: str | None, ssh: str | None = None
    ) -> None:
        await self._grouped_beats.run((space_id, state, now, facts, ssh))

    async def audit(self, now: int, actor: str, action: str, target: str, detail: str = "") -> None:
        await self._grouped_audit.run((now, actor, action, target, detail))

    async def _hold_agent_channels(self, holds: list[tuple[str, str, int]]) -> None:
        """`hold_agent_channel` for each of `holds` in one statement; of two for one Space, the
        later (an upsert may change a row once per statement)."""
        latest = {space_id: (replica_id, now) for space_id, replica_id, now in holds}
        await self._run(
            "INSERT INTO agent_channels (space_id, replica_id, attached_at)"
            " SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[])"
            " ON CONFLICT (space_id) DO UPDATE SET replica_id = excluded.replica_id,"
            " attached_at = excluded.attached_at, terminals = NULL, listening = NULL",
            (list(latest), [r for r, _ in latest.values()], [n for _, n in latest.values()]),
        )

    async def _heartbeats(self, beats: list[tuple[str, str, int, str | None, str | None]]) -> None:
        """`heartbeat` for each of `beats` in one statement; of two for one Space, the later."""
        latest = {beat[0]: beat for beat in beats}
        columns = list(zip(*latest.values(), strict=True))
        await self._run(
            "UPDATE spaces s SET state = v.state, last_seen_at = v.now, facts = COALESCE(v.facts, s.facts),"
            " ssh = COALESCE(v.ssh, s.ssh), updated_at = CASE WHEN s.state = v.state THEN s.updated_at ELSE v.now END"
            " FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::text[], %s::text[])"
            " AS v(id, state, now, facts, ssh)"
            " WHERE s.id = v.id AND s.deleted_at IS NULL",
            [list(c) for c in columns],
        )

    async def _audits(self, rows: list[tuple[int, str, str, str, str]]) -> None:
        """`audit` for each of `rows` in one statement, in their order (ids ascending)."""
        await self._run(
            "INSERT INTO audit_log (at, actor, action, target, detail)"
            " SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[])",
            [list(c) for c in zip(*rows, strict=True)],
        )

    @asynccontextmanager
    async def _connection(self, conflict: Conflicts | None = None) -> AsyncIterator[Any]:
        try:
            async with self._lend() as db, db.transaction():
                yield db
        except psycopg.Error as exc:
            raise self.translate(exc, conflict) from exc
        if self.health.failing:
            self.health.recovered()

    async def _run(self, query: Query, args: Sequence[Any] = (), conflict: Conflicts | None = None) -> int:
        # One statement commits on its own: no BEGIN/COMMIT round trips around it.
        try:
            async with self._lend() as db:
                changed = int((await db.execute(query, args)).rowcount)
        except psycopg.Error as exc:
            raise self.translate(exc, conflict) from exc
        if self.health.failing:
            self.health.recovered()
        return changed

    async def _all(self, query: Query, *args: Any) -> Rows:
        try:
            async with self._lend() as db:
                rows = list(await (await db.execute(query, args)).fetchall())
        except psycopg.Error as exc:
            raise self.translate(exc) from exc
        if self.health.failing:
            self.health.recovered()
        return rows

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTransaction]:
        try:
            async with self._lend() as db:
                tx = PostgresTransaction(db, self)
                try:
                    async with db.transaction():  # BEGIN; COMMIT, or ROLLBACK if the block raises
                        yield tx
                        if tx.aborted is not None:
                            raise TransactionAborted(
                                f"The transaction was aborted by an earlier failure ({tx.aborted!r}) and rolled back."
                            ) from tx.aborted
                finally:
                    tx.finished = True
        except psycopg.Error as exc:  # BEGIN or COMMIT failed (the block's own errors are StoreErrors)
            raise self.translate(exc) from exc

    async def close(self) -> None:
        await self._pool.close()

    async def check_writable(self) -> None:
        # An UPDATE that matches nothing still needs a writable, reachable primary.
        await self._run("UPDATE schema_migrations SET name = name WHERE FALSE")
        self.health.recovered()

    @property
    def unavailable(self) -> StoreUnavailable | None:
        return self.health.failure


def _unavailable_or(exc: psycopg.Error, where: str) -> StoreError:
    """Opening failed: why, for the operator (the driver's own words when no SQLSTATE decides)."""
    failure = translate(exc, where, None)
    if isinstance(failure, StoreUnavailable):
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if detail:  # libpq's reason (connection refused, no such host) is what the operator needs
            failure = StoreUnavailable(where, f"{failure.why} ({detail})", failure.hint)
        return failure
    return failure


def _template(row: Sequence[Any]) -> TemplateRecord:
    return TemplateRecord(row[0], row[1], int(row[2]), int(row[3]), bool(row[4]), int(row[5]))


def _user(row: Sequence[Any]) -> UserRecord:
    return UserRecord(row[0], row[1], bool(row[2]), row[3])
