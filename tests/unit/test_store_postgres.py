"""PostgreSQL's own side of the store (the contract itself is test_store_contract.py): what an
error means by its SQLSTATE, opening a database that cannot be used, and migrations that
replicas run at once."""

from __future__ import annotations

import asyncio
import string

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.store import Conflict, Store, StoreError, StoreUnavailable, Usage, migrations, sqlstates
from broker.store.backends import DatabaseUrlError, locate, open_store
from broker.store.failures import Health
from broker.store.postgres import PostgresStore, describe, translate
from tests.support import stores
from tests.support.postgres import PostgresServer, _make_template
from tests.support.stores import NOW, space

SQLSTATE = st.text(alphabet=string.digits + string.ascii_uppercase, min_size=5, max_size=5)


@given(SQLSTATE | st.sampled_from(["23505", "08006", "53100", "57P01", "25006", "28P01", "3D000", "40001"]))
def test_what_an_error_means_is_decided_by_its_sqlstate_alone(sqlstate: str) -> None:
    try:
        exc = psycopg.errors.lookup(sqlstate)("message")
    except KeyError:
        exc = None
    verdict = sqlstates.verdict(sqlstate)
    # Only unique_violation is a Conflict, whatever the message says.
    assert (verdict.kind == "conflict") == (sqlstate == "23505")
    # Connection failures, exhausted resources, shutdowns, a read-only server, refused
    # credentials: the environment's fault, with a reason and a hint for the operator.
    environment = sqlstate[:2] in ("08", "53", "28") or sqlstate in (
        "57P01",
        "57P02",
        "57P03",
        "57014",
        "55P03",
        "25006",
        "3D000",
        "42501",
    )
    assert (verdict.kind == "unavailable") == environment
    if environment:
        assert verdict.why and verdict.hint.endswith(".")
    if exc is not None:
        translated = translate(exc, "postgresql://db", Health(), ("users.email", "user exists"))
        assert isinstance(translated, Conflict) == (sqlstate == "23505")
        assert isinstance(translated, StoreUnavailable) == environment


def test_a_unique_violation_the_call_did_not_expect_is_a_plain_store_error() -> None:
    """A Conflict names a rule the caller knows; an unexpected clash is a bug, not a Conflict."""
    exc = psycopg.errors.UniqueViolation("duplicate key value violates unique constraint")
    translated = translate(exc, "postgresql://db", None)
    assert type(translated) is StoreError
    # A call that several rules can refuse names each by its constraint: one it did not name is
    # not guessed at (the contract suite hits both of spaces' rules on a real server).
    rules = {"spaces_owner_name": ("spaces.name", "taken"), "spaces_key_container": ("spaces.container", "has one")}
    assert type(translate(exc, "postgresql://db", None, rules)) is StoreError


def test_a_lost_connection_without_a_sqlstate_is_the_environment() -> None:
    health = Health()
    translated = translate(psycopg.OperationalError("server closed the connection"), "postgresql://db", health)
    assert isinstance(translated, StoreUnavailable)
    assert health.failure is translated
    assert type(translate(psycopg.InterfaceError("bug"), "postgresql://db", None)) is StoreError


def test_a_url_is_shown_without_its_password() -> None:
    url = "postgresql://pair:s3cret@db.example.com:6543/broker?sslmode=require&password=other"
    assert describe(url) == "postgresql://pair@db.example.com:6543/broker"
    assert "s3cret" not in describe("postgresql://pair:s3cret@[::1")


@pytest.mark.parametrize(
    ("database", "why"),
    [
        ("mysql://db/broker", "must start with postgresql://"),
        ("sqlite:///", "absolute file path"),
        ("sqlite://relative/broker.db", "absolute file path"),
        ("postgresql://pair:pw@[::1/broker", "does not parse"),
    ],
)
def test_a_database_url_names_a_backend_or_is_refused(database: str, why: str) -> None:
    with pytest.raises(DatabaseUrlError, match=why) as refused:
        locate(database)
    assert "pw" not in str(refused.value)


def test_database_urls_name_their_backend() -> None:
    assert str(locate("sqlite:///srv/pair/broker.db")) == "/srv/pair/broker.db"
    assert locate("postgres://db/broker") == "postgres://db/broker"


def test_a_server_that_cannot_be_reached_is_unavailable_with_a_reason() -> None:
    with socket_port() as port:
        url = f"postgresql://pair:s3cret@127.0.0.1:{port}/broker"
        with pytest.raises(StoreUnavailable) as unavailable:
            asyncio.run(open_store(url))
    message = f"{unavailable.value} {unavailable.value.why} {unavailable.value.hint}"
    assert "cannot connect" in message and "Connection refused" in message
    assert "s3cret" not in message
    assert "--database" in unavailable.value.hint


def test_a_missing_database_is_unavailable_and_says_which(postgres: PostgresServer) -> None:
    with pytest.raises(StoreUnavailable) as unavailable:
        asyncio.run(open_store(postgres.url("no_such_db")))
    # libpq tells why only in words at connect time: its reason is passed on, not parsed.
    assert unavailable.value.why.startswith("the broker cannot connect to the database server (")
    assert 'database "no_such_db" does not exist' in unavailable.value.why
    assert "database name" in unavailable.value.hint


def test_replicas_starting_together_migrate_once(postgres: PostgresServer) -> None:
    url = postgres.create_database(migrated=False)
    try:

        async def start_three() -> None:
            stores = await asyncio.gather(*(PostgresStore.open(url, pool_max=1) for _ in range(3)))
            for store in stores:
                await store.close()

        asyncio.run(start_three())
        versions = postgres.rows(url, "SELECT version FROM schema_migrations ORDER BY version")
        assert [v for (v,) in versions] == list(range(1, len(versions) + 1))
    finally:
        postgres.drop_database(url)


def test_the_test_template_is_made_from_inside_a_running_event_loop(postgres: PostgresServer) -> None:
    """Reproduction: the session's server starts on first use, and in tests/unit/test_quotas.py run
    alone that use is a coroutine's (`stores.backend` asking for the fixture): making the migrated
    template called `asyncio.run` inside the running loop, which refuses."""
    name = "pair_template_made_in_a_loop"

    async def first_use() -> None:
        _make_template(postgres, name)

    try:
        asyncio.run(first_use())
        versions = postgres.rows(postgres.url(name), "SELECT version FROM schema_migrations ORDER BY version")
        assert [v for (v,) in versions] == [m.version for m in migrations.available("postgresql")]
    finally:
        postgres.drop_database(postgres.url(name))


def test_a_database_from_a_newer_release_is_refused(postgres: PostgresServer) -> None:
    url = postgres.create_database()
    try:
        postgres.execute(url, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, 'x', 0)")
        with pytest.raises(StoreError, match="newer than this broker knows"):
            asyncio.run(open_store(url))
    finally:
        postgres.drop_database(url)


def test_a_read_only_server_fails_the_start_up_write_check(postgres: PostgresServer) -> None:
    url = postgres.create_database()
    try:
        name = url.rsplit("/", 1)[1]
        postgres.execute(postgres.admin_url, f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')

        async def check() -> None:
            store = await open_store(url)
            try:
                await store.check_writable()
            finally:
                await store.close()

        with pytest.raises(StoreUnavailable, match="read-only"):
            asyncio.run(check())
    finally:
        postgres.drop_database(url)


class socket_port:
    """A port on 127.0.0.1 that nothing listens on while the block runs."""

    def __enter__(self) -> int:
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        return int(self._sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self._sock.close()


def test_usage_in_a_transaction_holds_the_users_quota_until_it_ends(postgres: PostgresServer) -> None:
    """Two replicas checking the same person's quota at once: the second's `usage` waits for the
    first transaction, then counts the Space it made (the quota contract, broker/store/__init__.py)."""
    url = postgres.create_database()

    async def race() -> None:
        first, second = await open_store(url), await open_store(url)
        try:
            await stores.add_people(first)
            async with first.transaction() as tx:
                assert (await tx.usage("u_alice")).spaces == 0
                waiting = asyncio.create_task(_usage_in_a_transaction(second, "u_alice"))
                while not postgres.rows(url, "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"):
                    assert not waiting.done()
                    await asyncio.sleep(0.02)  # polling the server for the waiting lock
                await tx.create_space(space("sp_1", "u_alice", "one"), [])
            assert (await waiting).spaces == 1
        finally:
            await first.close()
            await second.close()

    try:
        asyncio.run(race())
    finally:
        postgres.drop_database(url)


async def _usage_in_a_transaction(store: Store, user_id: str) -> Usage:
    async with store.transaction() as tx:
        return await tx.usage(user_id)


def test_outbox_ids_become_visible_in_order_whatever_commits_first(postgres: PostgresServer) -> None:
    """A message put while an earlier one is still to commit waits for it: a relay that read the
    later id first would never see the earlier one (broker.outbox remembers the last id)."""
    url = postgres.create_database()

    async def race() -> None:
        first, second = await open_store(url), await open_store(url)
        try:
            async with first.transaction() as tx:
                await tx.outbox_put("pair_first", b"1", NOW)
                later = asyncio.create_task(second.outbox_put("pair_second", b"2", NOW))
                while not postgres.rows(url, "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"):
                    assert not later.done()
                    await asyncio.sleep(0.02)  # polling the server for the waiting lock
                assert await second.outbox_after(0, 10) == []  # nothing visible out of order
            await later
            assert [m[1] for m in await second.outbox_after(0, 10)] == ["pair_first", "pair_second"]
        finally:
            await first.close()
            await second.close()

    try:
        asyncio.run(race())
    finally:
        postgres.drop_database(url)


def test_connections_the_server_ended_while_idle_are_not_lent(postgres: PostgresServer) -> None:
    """Every pooled connection ended by the server (as a restart ends them): the next queries
    get new connections instead of failing (broker.store.postgres.check_idle)."""
    url = postgres.create_database()

    async def scenario() -> None:
        store = await PostgresStore.open(url, pool_max=3)
        try:
            await asyncio.gather(*(store.users() for _ in range(6)))  # more than one connection pooled
            others = "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            postgres.execute(url, f"SELECT pg_terminate_backend(pid) {others}")
            while postgres.rows(url, f"SELECT pid {others}"):  # gone, as after a restart
                await asyncio.sleep(0.01)
            for _ in range(6):
                await store.users()
            assert store.unavailable is None
        finally:
            await store.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))
    postgres.drop_database(url)


def test_a_busy_pool_makes_a_call_wait_not_fail(postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every pooled connection lent out for longer than a connection may be waited for (a storm
    of agents connecting): the next call waits its turn and is answered, and nothing says the
    database is unavailable."""
    from broker.store import postgres as pg

    url = postgres.create_database()
    monkeypatch.setattr(pg, "CONNECT_TIMEOUT", 0.2)

    async def scenario() -> None:
        store = await PostgresStore.open(url, pool_max=1)
        try:
            release = asyncio.Event()

            async def hold() -> None:
                async with store.transaction() as tx:
                    await tx.users()
                    await release.wait()

            holder = asyncio.create_task(hold())
            while store._pool.get_stats().get("pool_available"):  # the one connection lent out
                await asyncio.sleep(0.01)
            waiting = asyncio.create_task(store.users())
            await asyncio.sleep(0.5)  # past CONNECT_TIMEOUT, still waiting: the only sleep that can show it
            assert not waiting.done()
            release.set()
            assert await waiting == []
            await holder
            assert store.unavailable is None
        finally:
            await store.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))
    postgres.drop_database(url)
