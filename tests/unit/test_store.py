"""broker.store: schema migrations on a real SQLite file, and the SqliteStore's rules."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from broker.store import Conflict, StoreError, migrations
from broker.store.checkpoints import WAL_BACKSTOP_PAGES
from broker.store.records import SessionRecord, SpaceRecord, SshKeyRecord, TokenRecord, UserRecord
from broker.store.sqlite import SqliteStore

T = TypeVar("T")
NOW = 1_800_000_000


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def newest_version() -> int:
    return migrations.available()[-1][0]


def query(path: Path, sql: str, *args: object) -> list[Any]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def tables(path: Path) -> set[str]:
    return {r[0] for r in query(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}


def user(uid: str, email: str = "", *, admin: bool = False) -> UserRecord:
    return UserRecord(id=uid, email=email or f"{uid}@example.com", is_admin=admin, created_at=NOW)


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
    for name in ("alice", "bob", "carol"):
        run(store.create_user(user(f"u_{name}", f"{name}@example.com"), f"ak_{name}"))
    return store


# -- migrations -----------------------------------------------------------------------------------


def test_shipped_migrations_are_numbered_from_one_without_gaps() -> None:
    versions = [v for v, _, _ in migrations.available()]
    assert versions == list(range(1, len(versions) + 1))
    assert all(name.startswith(f"{v:04d}_") for v, name, _ in migrations.available())


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
        assert migrations.migrate(db) == []
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
    shipped = migrations.available()
    version = shipped[-1][0] + 1
    name = f"{version:04d}_x.sql"
    monkeypatch.setattr(
        migrations, "available", lambda: [*shipped, (version, name, "ALTER TABLE users ADD COLUMN nickname TEXT;")]
    )

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
    shipped = migrations.available()
    version = shipped[-1][0] + 1
    broken = "CREATE TABLE half_done (id INTEGER);\nINSERT INTO no_such_table VALUES (1);"
    monkeypatch.setattr(migrations, "available", lambda: [*shipped, (version, f"{version:04d}_broken.sql", broken)])

    with pytest.raises(StoreError, match="broken"):
        SqliteStore(db_path)

    assert "half_done" not in tables(db_path)
    assert query(db_path, "SELECT MAX(version) FROM schema_migrations") == [(version - 1,)]
    # Once the broken release is gone, the database opens as before.
    monkeypatch.setattr(migrations, "available", lambda: shipped)
    run(SqliteStore(db_path).close())


# -- users and sessions ---------------------------------------------------------------------------


def test_email_is_unique(people: SqliteStore) -> None:
    with pytest.raises(Conflict):
        run(people.create_user(user("u_other", "alice@example.com"), "ak_other"))
    assert [u.id for u in run(people.users())] == ["u_alice", "u_bob", "u_carol"]


def test_user_by_auth_key(people: SqliteStore) -> None:
    found = run(people.user_by_auth_key("ak_bob"))
    assert found is not None
    assert found.email == "bob@example.com"
    assert run(people.user_by_auth_key("ak_nobody")) is None


def test_session_lookup_honours_expiry(people: SqliteStore) -> None:
    run(people.create_session(session("se_1", "u_alice", expires_at=NOW + 100), "st_1"))

    found = run(people.session_by_token("st_1", NOW + 99))
    assert found is not None
    assert found[0].id == "se_1"
    assert found[1].email == "alice@example.com"
    assert run(people.session_by_token("st_1", NOW + 100)) is None
    assert run(people.session_by_token("st_unknown", NOW)) is None


def test_revoked_session_is_not_found(people: SqliteStore) -> None:
    run(people.create_session(session("se_1", "u_alice"), "st_1"))
    run(people.create_session(session("se_2", "u_alice"), "st_2"))

    run(people.revoke_session("se_1", NOW + 1))

    assert run(people.session_by_token("st_1", NOW + 2)) is None
    assert run(people.session_by_token("st_2", NOW + 2)) is not None


def test_new_auth_key_revokes_every_session(people: SqliteStore) -> None:
    run(people.create_session(session("se_1", "u_alice"), "st_1"))
    run(people.set_auth_key("u_alice", "ak_alice_2", NOW + 1))
    assert run(people.session_by_token("st_1", NOW + 2)) is None
    assert run(people.user_by_auth_key("ak_alice")) is None
    assert run(people.user_by_auth_key("ak_alice_2")) is not None


def test_remove_user_cascades(people: SqliteStore, db_path: Path) -> None:
    run(people.create_session(session("se_bob", "u_bob"), "st_bob"))
    run(people.add_ssh_key(ssh_key("k_bob", "u_bob")))
    run(people.create_space(space("sp_alice", "u_alice", "demo"), ["u_bob", "u_carol"]))
    run(people.create_space(space("sp_bob", "u_bob", "mine"), ["u_alice"]))

    owned = run(people.remove_user("u_bob", NOW + 1))

    assert owned == ["sp_bob"]
    assert run(people.user_by_email("bob@example.com")) is None
    assert run(people.session_by_token("st_bob", NOW + 2)) is None
    assert run(people.ssh_keys("u_bob")) == []
    assert run(people.shares("sp_alice")) == ["carol@example.com"]
    assert query(db_path, "SELECT COUNT(*) FROM sessions WHERE user_id = 'u_bob'") == [(0,)]
    assert query(db_path, "SELECT COUNT(*) FROM ssh_keys WHERE user_id = 'u_bob'") == [(0,)]
    assert query(db_path, "SELECT COUNT(*) FROM space_shares WHERE user_id = 'u_bob'") == [(0,)]
    assert [s.id for s in run(people.visible_spaces("u_alice"))] == ["sp_alice"]


def test_ssh_key_fingerprint_is_unique(people: SqliteStore) -> None:
    run(people.add_ssh_key(ssh_key("k1", "u_alice")))
    same_key = dataclasses.replace(ssh_key("k2", "u_bob"), fingerprint="SHA256:k1")
    with pytest.raises(Conflict):
        run(people.add_ssh_key(same_key))
    assert [k.id for k in run(people.ssh_keys("u_alice"))] == ["k1"]
    assert run(people.ssh_keys("u_bob")) == []


# -- Spaces ---------------------------------------------------------------------------------------


def test_space_name_is_unique_per_owner_among_live_spaces(people: SqliteStore) -> None:
    run(people.create_space(space("sp_1", "u_alice", "demo"), []))

    with pytest.raises(Conflict):
        run(people.create_space(space("sp_2", "u_alice", "demo"), []))
    assert run(people.space_name_taken("u_alice", "demo"))
    # Another owner may use the same name.
    run(people.create_space(space("sp_3", "u_bob", "demo"), []))

    run(people.delete_space("sp_1", NOW + 1))

    assert not run(people.space_name_taken("u_alice", "demo"))
    run(people.create_space(space("sp_4", "u_alice", "demo", at=NOW + 2), []))
    assert [s.id for s in run(people.visible_spaces("u_alice"))] == ["sp_4"]


def test_visible_spaces_are_owned_and_shared_but_not_deleted(people: SqliteStore) -> None:
    run(people.create_space(space("sp_a1", "u_alice", "a1", at=NOW), []))
    run(people.create_space(space("sp_b1", "u_bob", "b1", at=NOW + 1), ["u_alice"]))
    run(people.create_space(space("sp_b2", "u_bob", "b2", at=NOW + 2), []))
    run(people.create_space(space("sp_c1", "u_carol", "c1", at=NOW + 3), ["u_alice", "u_bob"]))
    run(people.create_space(space("sp_a2", "u_alice", "a2", at=NOW + 4), []))
    run(people.delete_space("sp_a2", NOW + 5))
    run(people.delete_space("sp_c1", NOW + 5))

    visible = run(people.visible_spaces("u_alice"))

    assert [s.id for s in visible] == ["sp_a1", "sp_b1"]
    assert [s.owner_email for s in visible] == ["alice@example.com", "bob@example.com"]
    assert [s.id for s in run(people.visible_spaces("u_bob"))] == ["sp_b1", "sp_b2"]
    assert run(people.visible_spaces("u_carol")) == []


def test_update_shares_adds_and_removes(people: SqliteStore) -> None:
    run(people.create_space(space("sp_1", "u_alice", "demo"), ["u_bob"]))

    run(people.update_shares("sp_1", add=["u_carol", "u_bob"], remove=[], now=NOW + 1))
    assert run(people.shares("sp_1")) == ["bob@example.com", "carol@example.com"]
    run(people.update_shares("sp_1", add=[], remove=["u_bob"], now=NOW + 2))

    assert run(people.shares("sp_1")) == ["carol@example.com"]
    assert not run(people.is_shared_with("sp_1", "u_bob"))
    assert run(people.is_shared_with("sp_1", "u_carol"))
    updated = run(people.space("sp_1"))
    assert updated is not None
    assert updated.updated_at == NOW + 2


def test_delete_space_revokes_tokens_clears_the_credential_and_shares(people: SqliteStore) -> None:
    run(people.create_space(space("sp_1", "u_alice", "demo"), ["u_bob", "u_carol"]))
    run(people.add_token(token("jti_used", "sp_1")))
    run(people.add_token(token("jti_spare", "sp_1")))
    run(people.register_agent("jti_used", "sp_1", "inst_1", '{"cpus": 2}', "ac_hash", NOW + 1))
    registered = run(people.space_by_credential("ac_hash"))
    assert registered is not None
    assert registered.id == "sp_1"
    assert registered.state == "starting"

    run(people.delete_space("sp_1", NOW + 2))

    for jti in ("jti_used", "jti_spare"):
        record = run(people.token(jti))
        assert record is not None
        assert record.revoked_at == NOW + 2
    assert run(people.space_by_credential("ac_hash")) is None
    assert run(people.shares("sp_1")) == []
    assert not run(people.is_shared_with("sp_1", "u_bob"))
    assert run(people.visible_spaces("u_bob")) == []
    tombstone = run(people.space("sp_1"))
    assert tombstone is not None
    assert tombstone.state == "deleted"
    assert tombstone.deleted_at == NOW + 2


def test_a_token_is_claimed_once_even_by_two_processes_that_both_read_it_unused(
    people: SqliteStore, db_path: Path
) -> None:
    """Reproduction: two brokers on one database both bootstrapped one token (the row was updated
    without a condition). A second connection stands for the second process."""
    run(people.create_space(space("sp_1", "u_alice", "demo"), []))
    run(people.add_token(token("jti_1", "sp_1")))
    other = SqliteStore(db_path)
    try:
        for reader in (people, other):  # each handler read the token before claiming it
            seen = run(reader.token("jti_1"))
            assert seen is not None
            assert seen.used_instance_id is None
        assert run(people.register_agent("jti_1", "sp_1", "inst_a", "{}", "ac_a", NOW + 1)) is True
        assert run(other.register_agent("jti_1", "sp_1", "inst_b", "{}", "ac_b", NOW + 2)) is False

        claimed = run(other.token("jti_1"))
        assert claimed is not None
        assert (claimed.used_instance_id, claimed.used_at) == ("inst_a", NOW + 1)
        assert run(other.space_by_credential("ac_b")) is None  # the loser changed nothing
        registered = run(other.space_by_credential("ac_a"))
        assert registered is not None
        assert registered.instance_id == "inst_a"
        # The winner's own retry (its answer lost) claims again, with a fresh credential.
        assert run(other.register_agent("jti_1", "sp_1", "inst_a", "{}", "ac_a2", NOW + 3)) is True
        assert run(people.space_by_credential("ac_a")) is None
    finally:
        run(other.close())


def test_a_revoked_token_or_a_deleted_space_cannot_be_claimed(people: SqliteStore) -> None:
    run(people.create_space(space("sp_1", "u_alice", "demo"), []))
    run(people.add_token(token("jti_1", "sp_1")))
    run(people.create_space(space("sp_2", "u_alice", "other"), []))
    run(people.add_token(token("jti_2", "sp_2")))
    run(people.delete_space("sp_1", NOW + 1))
    assert run(people.register_agent("jti_1", "sp_1", "inst_a", "{}", "ac_a", NOW + 2)) is False
    assert run(people.register_agent("jti_2", "sp_1", "inst_a", "{}", "ac_a", NOW + 2)) is False  # not its token
    assert run(people.space_by_credential("ac_a")) is None


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


def test_ssh_health_is_kept_until_reported_again_and_cleared_by_up_or_down(people: SqliteStore) -> None:
    run(people.create_space(space("sp_1", "u_alice", "demo"), []))
    run(people.add_token(token("jti_1", "sp_1")))
    run(people.register_agent("jti_1", "sp_1", "inst_1", "{}", "ac_hash", NOW))
    down = '{"serving":false,"reason":"sshd exited.","supervisor_state":"FATAL"}'
    run(people.heartbeat("sp_1", "starting", NOW + 1, None, down))
    run(people.heartbeat("sp_1", "starting", NOW + 2, None))  # an agent that does not report it
    record = run(people.space("sp_1"))
    assert record is not None
    assert (record.state, record.ssh) == ("starting", down)
    run(people.set_desired_state("sp_1", "running", "starting", NOW + 3))  # `up`: unknown until reported
    record = run(people.space("sp_1"))
    assert record is not None
    assert record.ssh is None


def test_silent_spaces_are_stopped_whether_running_starting_or_stopping(people: SqliteStore) -> None:
    for n, state in enumerate(("starting", "running", "stopping", "stopped", "created")):
        sid = f"sp_{n}"
        run(people.create_space(space(sid, "u_alice", f"s{n}"), []))
        run(people.heartbeat(sid, state, NOW, None))
    stopped = run(people.stop_silent_spaces(NOW + 1, NOW + 40))
    assert sorted(stopped) == ["sp_0", "sp_1", "sp_2"]


def test_deleting_twice_keeps_the_first_deletion_time(people: SqliteStore) -> None:
    run(people.create_space(space("sp_1", "u_alice", "demo"), []))
    run(people.delete_space("sp_1", NOW + 1))
    run(people.delete_space("sp_1", NOW + 50))
    tombstone = run(people.space("sp_1"))
    assert tombstone is not None
    assert tombstone.deleted_at == NOW + 1


# -- reads answered from memory until the database changes ------------------------------------------


def statements(store: SqliteStore) -> list[str]:
    """The SQL `store` runs from now on."""
    seen: list[str] = []
    store._db.set_trace_callback(seen.append)
    return seen


def test_repeated_reads_cost_one_pragma_while_nothing_changed(people: SqliteStore) -> None:
    run(people.create_space(space("sp_1", "u_alice", "demo"), ["u_bob"]))
    run(people.create_session(session("se_1", "u_alice"), "st_1"))
    run(people.visible_spaces("u_alice"))
    run(people.shares_of(["sp_1"]))
    run(people.session_by_token("st_1", NOW))

    seen = statements(people)
    for _ in range(3):
        assert [s.id for s in run(people.visible_spaces("u_alice"))] == ["sp_1"]
        assert run(people.shares_of(["sp_1"])) == {"sp_1": ["bob@example.com"]}
        assert run(people.session_by_token("st_1", NOW)) is not None

    assert seen and all(s == "PRAGMA data_version" for s in seen)


def test_a_write_by_this_store_is_read_back_at_once(people: SqliteStore) -> None:
    run(people.create_space(space("sp_1", "u_alice", "demo"), ["u_bob"]))
    assert run(people.shares_of(["sp_1"])) == {"sp_1": ["bob@example.com"]}

    run(people.update_shares("sp_1", ["u_carol"], ["u_bob"], NOW + 1))

    assert run(people.shares_of(["sp_1"])) == {"sp_1": ["carol@example.com"]}


def test_a_commit_by_another_process_is_read_back_at_once(people: SqliteStore, db_path: Path) -> None:
    # `pair-broker users remove` and friends write through their own connection while the broker serves.
    run(people.create_space(space("sp_1", "u_alice", "demo"), []))
    run(people.create_session(session("se_1", "u_alice"), "st_1"))
    assert [s.id for s in run(people.visible_spaces("u_alice"))] == ["sp_1"]
    assert run(people.session_by_token("st_1", NOW)) is not None

    other = sqlite3.connect(db_path, isolation_level=None)
    try:
        other.execute("UPDATE spaces SET deleted_at = ? WHERE id = 'sp_1'", (NOW + 1,))
        other.execute("UPDATE sessions SET revoked_at = ? WHERE id = 'se_1'", (NOW + 1,))
    finally:
        other.close()

    assert run(people.visible_spaces("u_alice")) == []
    assert run(people.session_by_token("st_1", NOW + 2)) is None


def test_an_agent_credential_cleared_elsewhere_stops_working_at_once(people: SqliteStore, db_path: Path) -> None:
    run(people.create_space(space("sp_1", "u_alice", "demo"), []))
    run(people.add_token(token("jti_1", "sp_1")))
    run(people.register_agent("jti_1", "sp_1", "inst_1", "{}", "ac_hash", NOW + 1))
    assert run(people.space_by_credential("ac_hash")) is not None

    other = sqlite3.connect(db_path, isolation_level=None)
    try:
        other.execute("UPDATE spaces SET agent_credential_hash = NULL WHERE id = 'sp_1'")
    finally:
        other.close()

    assert run(people.space_by_credential("ac_hash")) is None


def test_rows_of_a_rolled_back_transaction_are_never_read_back(people: SqliteStore) -> None:
    assert run(people.visible_spaces("u_alice")) == []

    async def fail_after_creating() -> None:
        async with people.transaction():
            await people.create_space(space("sp_1", "u_alice", "demo"), ["u_bob"])
            assert [s.id for s in await people.visible_spaces("u_alice")] == ["sp_1"]
            raise RuntimeError("the request failed after its first write")

    with pytest.raises(RuntimeError):
        run(fail_after_creating())

    assert run(people.visible_spaces("u_alice")) == []
    assert run(people.visible_spaces("u_bob")) == []


def test_changing_a_returned_list_does_not_change_the_next_answer(people: SqliteStore) -> None:
    run(people.create_space(space("sp_1", "u_alice", "demo"), ["u_bob"]))
    run(people.visible_spaces("u_alice")).clear()
    run(people.shares_of(["sp_1"]))["sp_1"].append("mallory@example.com")

    assert [s.id for s in run(people.visible_spaces("u_alice"))] == ["sp_1"]
    assert run(people.shares_of(["sp_1"])) == {"sp_1": ["bob@example.com"]}


def test_an_expired_session_is_refused_even_when_remembered(people: SqliteStore) -> None:
    run(people.create_session(session("se_1", "u_alice", expires_at=NOW + 100), "st_1"))
    assert run(people.session_by_token("st_1", NOW)) is not None
    assert run(people.session_by_token("st_1", NOW + 100)) is None


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


# -- the audit log -----------------------------------------------------------------------------------


def test_audit_log_gives_the_newest_entries_oldest_first_and_filters(store: SqliteStore) -> None:
    entries = [
        (NOW, "alice@example.com", "space.create", "sp_1", "demo"),
        (NOW + 1, "alice@example.com", "space.share", "sp_1", "bob@example.com"),
        (NOW + 2, "agent:sp_1", "space.running", "sp_1", ""),
        (NOW + 3, "bob@example.com", "session.create", "ses_1", "cli"),
        (NOW + 4, "alice@example.com", "spacey.thing", "sp_2", ""),
        (NOW + 5, "alice@example.com", "space.delete", "sp_1", "demo"),
    ]
    for entry in entries:
        run(store.audit(*entry))

    def actions(**filters: Any) -> list[str]:
        return [e.action for e in run(store.audit_log(**{"limit": 50, **filters}))]

    assert actions(limit=2) == ["spacey.thing", "space.delete"]
    assert actions() == [e[2] for e in entries]
    assert actions(since=NOW + 3) == ["session.create", "spacey.thing", "space.delete"]
    assert actions(actor="agent:sp_1") == ["space.running"]
    assert actions(action="space") == ["space.create", "space.share", "space.running", "space.delete"]
    assert actions(action="space.delete") == ["space.delete"]
    assert actions(target="sp_1", actor="alice@example.com") == ["space.create", "space.share", "space.delete"]
    first = run(store.audit_log(limit=1, target="ses_1"))[0]
    assert (first.at, first.actor, first.target, first.detail) == (NOW + 3, "bob@example.com", "ses_1", "cli")
