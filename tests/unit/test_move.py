"""Moving a SQLite broker's data into PostgreSQL (broker.move), the one place that decides how
each value crosses: generated data goes in through the store, and every table reads back the
same on the other side."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker import move
from broker.sealed_keys import UnreadableKeys
from broker.sealing import Sealer
from broker.store import (
    AccessRequestRecord,
    GroupRecord,
    Limits,
    SealedKeyRecord,
    SpaceKeyRecord,
    StreamRecord,
    TemplateRecord,
)
from broker.store.sqlite import SqliteStore
from tests.support.postgres import PostgresServer
from tests.support.stores import NOW, session, space, ssh_key, token, user

SEALER = Sealer(bytes(range(32)))
# Text a person or a container may send: anything PostgreSQL's text type holds (not NUL, which
# the broker's grammars refuse at entry) and UTF-8 can carry (no lone surrogates).
TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=30)
BIG = st.integers(min_value=0, max_value=2**62)  # byte counts and times: 64-bit on both sides


@st.composite
def broker_data(draw: st.DrawFn) -> dict[str, Any]:
    n_users = draw(st.integers(1, 4))
    names = draw(st.lists(TEXT.filter(bool), min_size=n_users, max_size=n_users, unique=True))
    spaces = draw(st.lists(st.tuples(st.integers(0, n_users - 1), TEXT, st.booleans()), max_size=5))
    audit = draw(st.lists(st.tuples(BIG, TEXT, TEXT, TEXT, TEXT), max_size=6))
    streams = draw(st.lists(st.tuples(BIG, BIG, TEXT), max_size=3))
    admins = draw(st.lists(st.booleans(), min_size=n_users, max_size=n_users))
    keys = draw(st.lists(st.tuples(TEXT, st.none() | BIG, st.booleans()), max_size=3))
    templates = draw(st.lists(st.tuples(TEXT, st.integers(0, 99), st.booleans()), max_size=3))
    limits = draw(st.lists(st.none() | st.integers(0, 2**31 - 1), min_size=3, max_size=3))
    requests = draw(st.lists(st.tuples(TEXT, TEXT), max_size=2))
    return {
        "users": list(zip(names, admins, strict=True)),
        "spaces": spaces,
        "audit": audit,
        "streams": streams,
        "keys": keys,
        "templates": templates,
        "limits": limits,
        "requests": requests,
    }


async def _fill(store: SqliteStore, data: dict[str, Any]) -> None:
    for i, (name, admin) in enumerate(data["users"]):
        await store.create_user(user(f"u_{i}", f"{name}@example.com", admin=admin), f"ak_{i}")
        await store.create_session(session(f"se_{i}", f"u_{i}"), f"st_{i}")
        await store.add_ssh_key(ssh_key(f"k_{i}", f"u_{i}"))
    for t, (description, units, default) in enumerate(data["templates"]):
        await store.add_template(TemplateRecord(f"t{t}", description, units, units + 1, default, NOW))
    await store.create_group(GroupRecord("grp_0", "team", NOW, Limits(*data["limits"])))
    await store.add_group_members("grp_0", ["u_0"], NOW)
    await store.set_user_quota("u_0", Limits(*reversed(data["limits"])))
    for n, (name, expires_at, revoked) in enumerate(data["keys"]):
        await store.create_space_key(
            SpaceKeyRecord(f"sk_{n}", "u_0", f"{name}#{n}", f"kh_{n}", NOW, expires_at), ["u_0"]
        )
        if revoked:
            await store.revoke_space_key(f"sk_{n}", NOW + 1)
    for j, (owner, name, deleted) in enumerate(data["spaces"]):
        sid = f"sp_{j}"
        made = dataclasses.replace(
            space(sid, f"u_{owner}", f"{name}#{j}"), template="t0", compute_units=j, storage_units=1
        )
        if data["keys"]:  # made by a container with the first key
            made = dataclasses.replace(made, space_key_id="sk_0", container_name=f"box-{j}")
        await store.create_space(made, [f"u_{k}" for k in range(owner)])
        await store.update_group_shares(sid, ["grp_0"], [], NOW)
        if data["keys"]:
            await store.register_keyed_agent("sk_0", sid, f"inst_{j}", "{}", f"ac_{j}", NOW + j)
        await store.add_token(token(f"jti_{j}", sid))
        await store.heartbeat(sid, "running", NOW + j, f'{{"note": "{j}"}}')
        if deleted:
            await store.delete_space(sid, NOW + 100)
    for k, (bytes_in, bytes_out, reason) in enumerate(data["streams"]):
        if data["spaces"]:
            await store.open_stream(StreamRecord(f"t_{k}", "sp_0", "u_0", "a@example.com", "127.0.0.1", NOW))
            await store.close_stream(f"t_{k}", NOW + 1, bytes_in, bytes_out, reason)
    for at, actor, action, target, detail in data["audit"]:
        await store.audit(at, actor, action, target, detail)
    await store.add_web_link("wl_1", "u_0", NOW, NOW + 600)
    for at, _, _, _, detail in data["audit"]:
        await store.outbox_put("pair_moved", detail.encode(), at)  # payloads are bytes
    for r, (email, message) in enumerate(data["requests"]):
        await store.add_access_request(
            AccessRequestRecord(f"ar_{r}", email, message, "192.0.2.9", "pending", NOW, NOW + 9), f"dc_{r}"
        )


def _sqlite_rows(path: Path, table: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(path)
    try:
        return sorted(db.execute(f'SELECT * FROM "{table}"').fetchall(), key=repr)
    finally:
        db.close()


def _postgres_rows(url: str, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as db:
        listed = ", ".join(f'"{c}"' for c in columns)
        rows = db.execute(f'SELECT {listed} FROM "{table}"').fetchall()
    # SQLite keeps flags as 0/1; PostgreSQL as booleans.
    return sorted((tuple(int(v) if isinstance(v, bool) else v for v in row) for row in rows), key=repr)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=broker_data())
def test_every_row_reads_back_the_same_after_the_move(postgres: PostgresServer, data: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "broker.db"
        source = SqliteStore(path)
        try:
            asyncio.run(_fill(source, data))
            tables = source.tables()
            columns = {t: source.columns(t) for t in tables}
        finally:
            source.close_now()
        url = postgres.create_database(migrated=False)
        try:
            moved = asyncio.run(move.move(path, url, sealer=SEALER))
            assert set(moved.counts) == set(tables)
            for table in tables:
                if table == "signing_keys":
                    continue  # sealed in from files by the move itself: test_sealed_keys.py
                expected = _sqlite_rows(path, table)
                assert moved.counts[table] == len(expected)
                assert _postgres_rows(url, table, columns[table]) == expected, table
            # The audit log's ids go on after the copied ones.
            with psycopg.connect(url, autocommit=True) as db:
                db.execute("INSERT INTO audit_log (at, actor, action, target) VALUES (1, 'a', 'b', 'c')")
                [(count, distinct)] = db.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM audit_log").fetchall()
            assert count == distinct == len(data["audit"]) + 1
        finally:
            postgres.drop_database(url)


def test_a_target_holding_data_is_refused_and_left_as_it_was(postgres: PostgresServer, tmp_path: Path) -> None:
    path = tmp_path / "broker.db"
    source = SqliteStore(path)
    asyncio.run(source.create_user(user("u_1"), "ak_1"))
    source.close_now()
    url = postgres.create_database()
    try:
        postgres.execute(
            url, f"INSERT INTO users (id, email, auth_key_hash, created_at) VALUES ('u_9', 'x@y', 'h', {NOW})"
        )
        with pytest.raises(move.TargetNotEmpty) as refused:
            asyncio.run(move.move(path, url, sealer=SEALER))
        assert refused.value.holding == {"users": 1}
        assert postgres.rows(url, "SELECT id FROM users") == [("u_9",)]
        replaced = asyncio.run(move.move(path, url, sealer=SEALER, replace=True))
        assert replaced.emptied == {"users": 1}
        assert postgres.rows(url, "SELECT id FROM users") == [("u_1",)]
    finally:
        postgres.drop_database(url)


def test_sealed_keys_that_do_not_open_roll_the_whole_move_back(postgres: PostgresServer, tmp_path: Path) -> None:
    path = tmp_path / "broker.db"
    source = SqliteStore(path)
    asyncio.run(source.create_user(user("u_1"), "ak_1"))
    asyncio.run(
        source.add_signing_key(SealedKeyRecord("kid_1", NOW, Sealer(bytes(32)).seal("signing_keys/kid_1", b"x")))
    )
    source.close_now()
    url = postgres.create_database()
    try:
        with pytest.raises(UnreadableKeys):
            asyncio.run(move.move(path, url, sealer=SEALER))
        assert postgres.rows(url, "SELECT COUNT(*) FROM users") == [(0,)]  # nothing of it stayed
    finally:
        postgres.drop_database(url)
