"""The SQLite store's own machinery: migrations applied to a real file, the connection's rules
(one transaction at a time, result codes), the memo of repeated reads, several processes on one
file, and WAL checkpoints off the event loop. What every backend must do is in
test_store_contract.py."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from broker.store import StoreError, migrations
from broker.store import sqlite as sqlite_store
from broker.store.checkpoints import WAL_BACKSTOP_PAGES
from broker.store.sqlite import SqliteStore, migrate
from tests.support.stores import NOW, add_people, session, space, token, user

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def newest_version() -> int:
    return migrations.available("sqlite")[-1].version


def query(path: Path, sql: str, *args: object) -> list[Any]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def tables(path: Path) -> set[str]:
    return {r[0] for r in query(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "broker.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(db_path)
    yield s
    run(s.close())


@pytest.fixture
def people(store: SqliteStore) -> SqliteStore:
    """alice, bob and carol, with auth key hashes ak_<name>."""
    run(add_people(store))
    return store


# -- migrations -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", migrations.DIALECTS)
def test_shipped_migrations_are_numbered_from_one_without_gaps(dialect: str) -> None:
    shipped = migrations.available(dialect)
    versions = [m.version for m in shipped]
    assert versions == list(range(1, len(versions) + 1))
    assert all(m.name.startswith(f"{m.version:04d}_") for m in shipped)
    # every dialect runs the same sequence: the same names, whichever file says it in its SQL
    assert [m.name.split(".")[0] for m in shipped] == [m.name.split(".")[0] for m in migrations.available("sqlite")]


def test_fresh_database_gets_the_newest_schema_in_wal_mode(store: SqliteStore, db_path: Path) -> None:
    assert query(db_path, "SELECT MAX(version) FROM schema_migrations") == [(newest_version(),)]
    assert query(db_path, "PRAGMA journal_mode") == [("wal",)]
    assert {"users", "sessions", "ssh_keys", "spaces", "space_shares", "space_tokens", "audit_log"} <= tables(db_path)


def test_reopening_applies_nothing(store: SqliteStore, db_path: Path) -> None:
    run(store.create_user(user("u_alice"), "ak_alice"))
    run(store.close())
    before = query(db_path, "SELECT version, name, applied_at FROM schema_migrations ORDER BY version")

    reopened = SqliteStore(db_path)
    try:
        assert run(reopened.user_by_email("u_alice@example.com")) == user("u_alice")
    finally:
        run(reopened.close())
    db = sqlite3.connect(db_path)
    try:
        assert migrate(db) == []
    finally:
        db.close()
    assert query(db_path, "SELECT version, name, applied_at FROM schema_migrations ORDER BY version") == before


def test_database_from_a_newer_release_is_refused(store: SqliteStore, db_path: Path) -> None:
    run(store.close())
    db = sqlite3.connect(db_path)
    db.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'future.sql', 0)", (999,))
    db.commit()
    db.close()

    with pytest.raises(StoreError, match="999"):
        SqliteStore(db_path)


def test_new_migration_upgrades_an_existing_database_in_place(
    store: SqliteStore, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(store.create_user(user("u_alice"), "ak_alice"))
    run(store.close())
    shipped = migrations.available("sqlite")
    version = shipped[-1].version + 1
    name = f"{version:04d}_x.sql"
    added = migrations.Migration(version, name, "ALTER TABLE users ADD COLUMN nickname TEXT;")
    monkeypatch.setattr(migrations, "available", lambda dialect: [*shipped, added])

    upgraded = SqliteStore(db_path)
    try:
        assert run(upgraded.user_by_email("u_alice@example.com")) == user("u_alice")
    finally:
        run(upgraded.close())

    assert query(db_path, "SELECT MAX(version) FROM schema_migrations") == [(version,)]
    assert query(db_path, "SELECT name FROM schema_migrations WHERE version = ?", version) == [(name,)]
    assert query(db_path, "SELECT id, nickname FROM users") == [("u_alice", None)]


def test_failing_migration_rolls_back_entirely(
    store: SqliteStore, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(store.close())
    shipped = migrations.available("sqlite")
    version = shipped[-1].version + 1
    broken = "CREATE TABLE half_done (id INTEGER);\nINSERT INTO no_such_table VALUES (1);"
    added = migrations.Migration(version, f"{version:04d}_broken.sql", broken)
    monkeypatch.setattr(migrations, "available", lambda dialect: [*shipped, added])

    with pytest.raises(StoreError, match="broken"):
        SqliteStore(db_path)

    assert "half_done" not in tables(db_path)
    assert query(db_path, "SELECT MAX(version) FROM schema_migrations") == [(version - 1,)]
    # Once the broken release is gone, the database opens as before.
    monkeypatch.setattr(migrations, "available", lambda dialect: shipped)
    run(SqliteStore(db_path).close())


def test_a_dialect_takes_its_own_file_where_there_is_one(tmp_path: Path) -> None:
    (tmp_path / "0001_initial.sqlite.sql").write_text("CREATE TABLE t (id INTEGER PRIMARY KEY);")
    (tmp_path / "0001_initial.postgresql.sql").write_text("CREATE TABLE t (id BIGINT GENERATED ALWAYS AS IDENTITY);")
    (tmp_path / "0002_index.sql").write_text("CREATE INDEX t_id ON t(id);")
    (tmp_path / "notes.txt").write_text("not a migration")
    for dialect, first in (("sqlite", "INTEGER PRIMARY KEY"), ("postgresql", "IDENTITY")):
        found = migrations.available(dialect, tmp_path)
        assert [(m.version, m.name) for m in found] == [(1, f"0001_initial.{dialect}.sql"), (2, "0002_index.sql")]
        assert first in found[0].sql


def test_statements_are_split_where_sqlite_says_they_end() -> None:
    script = (
        "-- a comment; with a semicolon\nCREATE TABLE a (x TEXT DEFAULT ';');\n\n"
        "CREATE TRIGGER t AFTER INSERT ON a BEGIN\n  UPDATE a SET x = 'y;';\nEND;\n-- the end\n"
    )
    assert [s.split()[-1] for s in sqlite_store.statements(script)] == ["';');", "END;"]
    with pytest.raises(StoreError, match="does not end"):
        list(sqlite_store.statements("CREATE TABLE b (x TEXT)"))


# -- one connection, one transaction at a time ----------------------------------------------------


def test_calling_the_store_inside_its_own_open_transaction_is_refused(people: SqliteStore) -> None:
    """On SQLite the call would silently join the transaction (one connection); on PostgreSQL it
    would run beside it. Neither is what the caller meant: it should use the transaction."""

    async def misuse() -> None:
        async with people.transaction() as tx:
            await tx.create_space(space("sp_1", "u_alice", "demo"), [])
            with pytest.raises(StoreError, match="transaction is open"):
                await people.space("sp_1")
            with pytest.raises(StoreError, match="transaction is open"):
                await people.visible_spaces("u_alice")  # a remembered read too
            with pytest.raises(StoreError, match="already"):
                async with people.transaction():
                    pass

    run(misuse())
    assert [s.id for s in run(people.visible_spaces("u_alice"))] == ["sp_1"]  # the transaction itself went on


def test_a_foreign_key_failure_is_not_a_conflict(people: SqliteStore) -> None:
    """A share naming no user is a bug upstream, not a name clash: told apart by SQLite's result
    code, not its message."""
    with pytest.raises(sqlite3.IntegrityError) as failure:
        run(people.create_space(space("sp_1", "u_alice", "demo"), ["u_nobody"]))
    assert getattr(failure.value, "sqlite_errorcode", 787) == 787  # SQLITE_CONSTRAINT_FOREIGNKEY
    assert run(people.visible_spaces("u_alice")) == []


# -- several processes on one file ----------------------------------------------------------------


def test_many_connections_claiming_one_token_at_once_have_one_winner(people: SqliteStore, db_path: Path) -> None:
    run(people.create_space(space("sp_1", "u_alice", "demo"), []))
    contenders = 6
    stores = [SqliteStore(db_path) for _ in range(contenders)]
    try:
        for round_ in range(10):
            jti = f"jti_{round_}"
            run(people.add_token(token(jti, "sp_1")))
            start = threading.Barrier(contenders)

            def claim(i: int, jti: str = jti, start: threading.Barrier = start) -> bool:
                start.wait()
                return run(stores[i].register_agent(jti, "sp_1", f"inst_{i}", "{}", f"ac_{jti}_{i}", NOW))

            with ThreadPoolExecutor(contenders) as pool:
                won = list(pool.map(claim, range(contenders)))
            assert won.count(True) == 1, (round_, won)
            winner = won.index(True)
            claimed = run(people.token(jti))
            assert claimed is not None
            assert claimed.used_instance_id == f"inst_{winner}"
            assert run(people.space_by_credential(f"ac_{jti}_{winner}")) is not None
    finally:
        for s in stores:
            run(s.close())


# -- reads answered from memory until the database changes ------------------------------------------


def statements(store: SqliteStore) -> list[str]:
    """The SQL `store` runs from now on."""
    seen: list[str] = []
    store._db.set_trace_callback(seen.append)
    return seen


def test_repeated_reads_cost_one_pragma_while_nothing_changed(people: SqliteStore) -> None:
    # Every read a Space list makes (GET /api/v1/spaces: broker.spaces.visible) is among them.
    run(people.create_space(space("sp_1", "u_alice", "demo"), ["u_bob"]))
    run(people.create_session(session("se_1", "u_alice"), "st_1"))
    run(people.visible_spaces("u_alice"))
    run(people.shares_of(["sp_1"]))
    run(people.group_shares_of(["sp_1"]))
    run(people.net_bytes(["sp_1"], NOW - 86400))
    run(people.session_by_token("st_1", NOW))

    seen = statements(people)
    for _ in range(3):
        assert [s.id for s in run(people.visible_spaces("u_alice"))] == ["sp_1"]
        assert run(people.shares_of(["sp_1"])) == {"sp_1": ["bob@example.com"]}
        assert run(people.group_shares_of(["sp_1"])) == {"sp_1": []}
        assert run(people.net_bytes(["sp_1"], NOW - 86400)) == {"sp_1": 0}
        assert run(people.session_by_token("st_1", NOW)) is not None

    assert seen and all(s == "PRAGMA data_version" for s in seen)


def test_the_requests_of_one_event_loop_step_share_one_pragma(people: SqliteStore) -> None:
    # Under load the loop runs many requests between two waits for I/O; each list would read
    # data_version again for each of its five memoized reads (about 3 µs apiece).
    run(people.create_space(space("sp_1", "u_alice", "demo"), ["u_bob"]))

    async def lists(times: int) -> None:
        for _ in range(times):
            assert [s.id for s in await people.visible_spaces("u_alice")] == ["sp_1"]
            assert await people.shares_of(["sp_1"]) == {"sp_1": ["bob@example.com"]}

    async def steps() -> tuple[list[str], list[str]]:
        await lists(1)  # the memo holds both reads
        await asyncio.sleep(0)
        seen = statements(people)
        await lists(3)  # one step: nothing here waits
        in_one = list(seen)
        await asyncio.sleep(0)  # the next step reads it again
        await lists(1)
        return in_one, seen

    in_one, both = run(steps())
    assert in_one == ["PRAGMA data_version"]
    assert both == ["PRAGMA data_version", "PRAGMA data_version"]


def test_another_process_commit_is_seen_from_the_next_step_and_our_own_at_once(
    people: SqliteStore, db_path: Path
) -> None:
    run(people.create_space(space("sp_1", "u_alice", "demo"), []))

    async def scenario() -> list[list[str]]:
        seen = [await people.shares_of(["sp_1"])]
        other = sqlite3.connect(db_path)  # `pair-broker spaces …` in another process, say
        other.execute("INSERT INTO space_shares (space_id, user_id, created_at) VALUES ('sp_1', 'u_bob', 0)")
        other.commit()
        other.close()
        await asyncio.sleep(0)
        seen.append(await people.shares_of(["sp_1"]))
        await people.update_shares("sp_1", ["u_carol"], [], NOW)  # our own write, same step
        seen.append(await people.shares_of(["sp_1"]))
        return [found["sp_1"] for found in seen]

    assert run(scenario()) == [[], ["bob@example.com"], ["bob@example.com", "carol@example.com"]]


def test_the_recent_bytes_of_a_list_read_only_recent_streams(people: SqliteStore) -> None:
    # `net` sums the streams closed in the last 24 h; without an index on (space_id, closed_at)
    # SQLite read every stream each Space ever had, on every Space list.
    run(people.create_space(space("sp_1", "u_alice", "demo"), ["u_bob"]))
    seen = statements(people)
    run(people.net_bytes(["sp_1"], NOW - 86400))
    (query,) = [s for s in seen if "FROM streams" in s]
    plan = " ".join(str(row[-1]) for row in people._db.execute(f"EXPLAIN QUERY PLAN {query}"))
    assert "USING INDEX streams_space_closed" in plan, plan


# -- checkpoints off the event loop ------------------------------------------------------------------


def test_commits_reach_the_database_file_through_the_background_checkpointer(db_path: Path) -> None:
    store = SqliteStore(db_path)
    try:
        # The store's own connection checkpoints only as a backstop (each would stall a request)...
        assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == WAL_BACKSTOP_PAGES > 1000
        run(store.create_user(user("u_alice", "alice@example.com"), "ak_alice"))
        # ...yet the row reaches the main file: read it ignoring the WAL (immutable=1).
        deadline = time.monotonic() + 10
        while True:
            main_file = sqlite3.connect(f"file:{db_path}?immutable=1", uri=True)
            try:
                found = main_file.execute("SELECT email FROM users").fetchall()
            except sqlite3.DatabaseError:  # not even the schema yet, or caught mid-checkpoint: look again
                found = []
            finally:
                main_file.close()
            if found or time.monotonic() > deadline:
                break
            time.sleep(0.05)  # nothing to wait on: the checkpointer's only trace is the file itself
        assert found == [("alice@example.com",)]
    finally:
        run(store.close())
    assert not any(t.name == "sqlite-checkpoints" and t.is_alive() for t in threading.enumerate())


def test_the_wal_stays_bounded_under_sustained_writes(db_path: Path) -> None:
    # A checkpoint from another connection never catches up with a writer that keeps committing, so
    # only the store's own backstop lets SQLite start the WAL over; without it the file grows forever.
    pages = 50
    store = SqliteStore(db_path, wal_pages=pages)
    try:
        run(store.create_user(user("u_alice", "alice@example.com"), "ak_alice"))
        for i in range(20 * pages):
            run(store.create_session(session(f"se_{i}", "u_alice"), f"st_{i}"))
        wal = db_path.with_name(db_path.name + "-wal").stat().st_size
        frame = 4096 + 24
        assert wal < 4 * pages * frame, f"the WAL grew to {wal // frame} frames"
    finally:
        run(store.close())
