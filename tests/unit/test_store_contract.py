"""The store contract (broker/store/__init__.py), against every backend: the same rules, whatever
database holds them. SQLite's own machinery (migrations on a file, the memo, WAL checkpoints) is
tested in test_store_sqlite.py.

Each test opens its store in its own event loop, as the broker does (async drivers bind to one).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.store import (
    AccessRequestRecord,
    AgentChannelRecord,
    Conflict,
    GroupRecord,
    Limits,
    PortRecord,
    ReplicaRecord,
    SealedKeyRecord,
    SpaceKeyRecord,
    Store,
    StoreError,
    StreamRecord,
    TemplateRecord,
    TransactionAborted,
    migrations,
)
from pair.api.models import PortLevel, SpaceState
from tests.support import stores
from tests.support.stores import NOW, Backend, session, space, ssh_key, stream, token, user

BACKENDS = ["sqlite", "postgresql"]

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with stores.backend(request, request.param, tmp_path) as opened:
        yield opened


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    opened = await backend.open()
    yield opened
    await opened.close()


@pytest.fixture
async def people(store: Store) -> Store:
    """alice, bob and carol, with auth key hashes ak_<name>."""
    await stores.add_people(store)
    return store


# -- users and sessions ---------------------------------------------------------------------------


async def test_email_is_unique(people: Store) -> None:
    with pytest.raises(Conflict):
        await people.create_user(user("u_other", "alice@example.com"), "ak_other")
    assert [u.id for u in (await people.users())] == ["u_alice", "u_bob", "u_carol"]


async def test_user_by_auth_key(people: Store) -> None:
    found = await people.user_by_auth_key("ak_bob")
    assert found is not None
    assert found.email == "bob@example.com"
    assert (await people.user_by_auth_key("ak_nobody")) is None


async def test_session_lookup_honours_expiry(people: Store) -> None:
    await people.create_session(session("se_1", "u_alice", expires_at=NOW + 100), "st_1")

    found = await people.session_by_token("st_1", NOW + 99)
    assert found is not None
    assert found[0].id == "se_1"
    assert found[1].email == "alice@example.com"
    assert (await people.session_by_token("st_1", NOW + 100)) is None
    assert (await people.session_by_token("st_unknown", NOW)) is None


async def test_revoked_session_is_not_found(people: Store) -> None:
    await people.create_session(session("se_1", "u_alice"), "st_1")
    await people.create_session(session("se_2", "u_alice"), "st_2")

    await people.revoke_session("se_1", NOW + 1)

    assert (await people.session_by_token("st_1", NOW + 2)) is None
    assert (await people.session_by_token("st_2", NOW + 2)) is not None


async def test_new_auth_key_revokes_every_session(people: Store) -> None:
    await people.create_session(session("se_1", "u_alice"), "st_1")
    await people.set_auth_key("u_alice", "ak_alice_2", NOW + 1)
    assert (await people.session_by_token("st_1", NOW + 2)) is None
    assert (await people.user_by_auth_key("ak_alice")) is None
    assert (await people.user_by_auth_key("ak_alice_2")) is not None


async def test_remove_user_cascades(people: Store, backend: Backend) -> None:
    await people.create_session(session("se_bob", "u_bob"), "st_bob")
    await people.add_ssh_key(ssh_key("k_bob", "u_bob"))
    await people.create_space(space("sp_alice", "u_alice", "demo"), ["u_bob", "u_carol"])
    await people.create_space(space("sp_bob", "u_bob", "mine"), ["u_alice"])

    owned = await people.remove_user("u_bob", NOW + 1)

    assert owned == ["sp_bob"]
    assert (await people.user_by_email("bob@example.com")) is None
    assert (await people.session_by_token("st_bob", NOW + 2)) is None
    assert (await people.ssh_keys("u_bob")) == []
    assert (await people.shares("sp_alice")) == ["carol@example.com"]
    assert backend.rows("SELECT COUNT(*) FROM sessions WHERE user_id = 'u_bob'") == [(0,)]
    assert backend.rows("SELECT COUNT(*) FROM ssh_keys WHERE user_id = 'u_bob'") == [(0,)]
    assert backend.rows("SELECT COUNT(*) FROM space_shares WHERE user_id = 'u_bob'") == [(0,)]
    assert [s.id for s in (await people.visible_spaces("u_alice"))] == ["sp_alice"]


async def test_rows_made_in_the_same_second_come_in_one_order(people: Store, backend: Backend) -> None:
    """Times are whole seconds, so lists tie often: the tie goes to the name (or email), then the
    id, in every list ordered by a time. Reproduction: these lists broke ties by the random id
    alone, so two Spaces made together listed in whatever order their ids fell (here the ids sort
    against the names, so only the tiebreak puts them in order)."""
    for sid, owner, name in (
        ("sp_5", "u_alice", "alpha"),
        ("sp_4", "u_alice", "gamma"),
        ("sp_3", "u_alice", "beta"),
        ("sp_2", "u_bob", "alpha"),  # the same name as alice's: her email first
        ("sp_1", "u_bob", "zeta"),
    ):
        await people.create_space(space(sid, owner, name), ["u_alice"] if owner == "u_bob" else [])
    await people.create_group(GroupRecord("grp_1", "eng", NOW, Limits()))
    for sid in ("sp_1", "sp_2", "sp_3", "sp_4", "sp_5"):
        await people.update_group_shares(sid, ["grp_1"], [], NOW)
    for kid, comment in (("k_3", "laptop"), ("k_2", "work"), ("k_1", "desktop")):
        await people.add_ssh_key(dataclasses.replace(ssh_key(kid, "u_alice"), comment=comment))
    for sid, uid in (("st_3", "u_carol"), ("st_2", "u_alice"), ("st_1", "u_bob")):
        await people.open_stream(stream(sid, "sp_5", uid))

    spaces_in_order = [("alpha", "u_alice"), ("alpha", "u_bob"), ("beta", "u_alice"), ("gamma", "u_alice")]
    spaces_in_order.append(("zeta", "u_bob"))
    second = await backend.open()  # read twice: here, and through another connection (no memo)
    try:
        for store in (people, second):
            assert [(s.name, s.owner_id) for s in await store.visible_spaces("u_alice")] == spaces_in_order
            assert [(s.name, s.owner_id) for s in await store.spaces_shared_with_group("grp_1")] == spaces_in_order
            assert [k.comment for k in await store.ssh_keys("u_alice")] == ["desktop", "laptop", "work"]
            assert [t.email for t in await store.open_streams("sp_5")] == [
                "alice@example.com",
                "bob@example.com",
                "carol@example.com",
            ]
    finally:
        await second.close()
    assert await people.remove_user("u_alice", NOW + 1) == ["sp_5", "sp_3", "sp_4"]  # alpha, beta, gamma


async def test_ssh_key_fingerprint_is_unique(people: Store) -> None:
    await people.add_ssh_key(ssh_key("k1", "u_alice"))
    same_key = dataclasses.replace(ssh_key("k2", "u_bob"), fingerprint="SHA256:k1")
    with pytest.raises(Conflict):
        await people.add_ssh_key(same_key)
    assert [k.id for k in (await people.ssh_keys("u_alice"))] == ["k1"]
    assert (await people.ssh_keys("u_bob")) == []


async def test_space_name_is_unique_per_owner_among_live_spaces(people: Store) -> None:
    await people.create_space(space("sp_1", "u_alice", "demo"), [])

    with pytest.raises(Conflict):
        await people.create_space(space("sp_2", "u_alice", "demo"), [])
    # Another owner may use the same name.
    await people.create_space(space("sp_3", "u_bob", "demo"), [])

    await people.delete_space("sp_1", NOW + 1)

    await people.create_space(space("sp_4", "u_alice", "demo", at=NOW + 2), [])
    assert [s.id for s in (await people.visible_spaces("u_alice"))] == ["sp_4"]


async def test_visible_spaces_are_owned_and_shared_but_not_deleted(people: Store) -> None:
    await people.create_space(space("sp_a1", "u_alice", "a1", at=NOW), [])
    await people.create_space(space("sp_b1", "u_bob", "b1", at=NOW + 1), ["u_alice"])
    await people.create_space(space("sp_b2", "u_bob", "b2", at=NOW + 2), [])
    await people.create_space(space("sp_c1", "u_carol", "c1", at=NOW + 3), ["u_alice", "u_bob"])
    await people.create_space(space("sp_a2", "u_alice", "a2", at=NOW + 4), [])
    await people.delete_space("sp_a2", NOW + 5)
    await people.delete_space("sp_c1", NOW + 5)

    visible = await people.visible_spaces("u_alice")

    assert [s.id for s in visible] == ["sp_a1", "sp_b1"]
    assert [s.owner_email for s in visible] == ["alice@example.com", "bob@example.com"]
    assert [s.id for s in (await people.visible_spaces("u_bob"))] == ["sp_b1", "sp_b2"]
    assert (await people.visible_spaces("u_carol")) == []


async def test_update_shares_adds_and_removes(people: Store) -> None:
    await people.create_space(space("sp_1", "u_alice", "demo"), ["u_bob"])

    await people.update_shares("sp_1", add=["u_carol", "u_bob"], remove=[], now=NOW + 1)
    assert (await people.shares("sp_1")) == ["bob@example.com", "carol@example.com"]
    await people.update_shares("sp_1", add=[], remove=["u_bob"], now=NOW + 2)

    assert (await people.shares("sp_1")) == ["carol@example.com"]
    assert not (await people.is_shared_with("sp_1", "u_bob"))
    assert await people.is_shared_with("sp_1", "u_carol")
    updated = await people.space("sp_1")
    assert updated is not None
    assert updated.updated_at == NOW + 2


async def test_delete_space_revokes_tokens_clears_the_credential_and_shares(people: Store) -> None:
    await people.create_space(space("sp_1", "u_alice", "demo"), ["u_bob", "u_carol"])
    await people.add_token(token("jti_used", "sp_1"))
    await people.add_token(token("jti_spare", "sp_1"))
    await people.register_agent("jti_used", "sp_1", "inst_1", '{"cpus": 2}', "ac_hash", NOW + 1)
    registered = await people.space_by_credential("ac_hash")
    assert registered is not None
    assert registered.id == "sp_1"
    assert registered.state == "starting"

    await people.delete_space("sp_1", NOW + 2)

    for jti in ("jti_used", "jti_spare"):
        record = await people.token(jti)
        assert record is not None
        assert record.revoked_at == NOW + 2
    assert (await people.space_by_credential("ac_hash")) is None
    assert (await people.shares("sp_1")) == []
    assert not (await people.is_shared_with("sp_1", "u_bob"))
    assert (await people.visible_spaces("u_bob")) == []
    tombstone = await people.space("sp_1")
    assert tombstone is not None
    assert tombstone.state == "deleted"
    assert tombstone.deleted_at == NOW + 2


async def test_a_token_is_claimed_once_even_by_two_processes_that_both_read_it_unused(
    people: Store, backend: Backend
) -> None:
    """Reproduction: two brokers on one database both bootstrapped one token (the row was updated
    without a condition). A second connection stands for the second process."""
    await people.create_space(space("sp_1", "u_alice", "demo"), [])
    await people.add_token(token("jti_1", "sp_1"))
    other = await backend.open()
    try:
        for reader in (people, other):  # each handler read the token before claiming it
            seen = await reader.token("jti_1")
            assert seen is not None
            assert seen.used_instance_id is None
        assert (await people.register_agent("jti_1", "sp_1", "inst_a", "{}", "ac_a", NOW + 1)) is True
        assert (await other.register_agent("jti_1", "sp_1", "inst_b", "{}", "ac_b", NOW + 2)) is False

        claimed = await other.token("jti_1")
        assert claimed is not None
        assert (claimed.used_instance_id, claimed.used_at) == ("inst_a", NOW + 1)
        assert (await other.space_by_credential("ac_b")) is None  # the loser changed nothing
        registered = await other.space_by_credential("ac_a")
        assert registered is not None
        assert registered.instance_id == "inst_a"
        # The winner's own retry (its answer lost) claims again, with a fresh credential.
        assert (await other.register_agent("jti_1", "sp_1", "inst_a", "{}", "ac_a2", NOW + 3)) is True
        assert (await people.space_by_credential("ac_a")) is None
    finally:
        await other.close()


async def test_a_revoked_token_or_a_deleted_space_cannot_be_claimed(people: Store) -> None:
    await people.create_space(space("sp_1", "u_alice", "demo"), [])
    await people.add_token(token("jti_1", "sp_1"))
    await people.create_space(space("sp_2", "u_alice", "other"), [])
    await people.add_token(token("jti_2", "sp_2"))
    await people.delete_space("sp_1", NOW + 1)
    assert (await people.register_agent("jti_1", "sp_1", "inst_a", "{}", "ac_a", NOW + 2)) is False
    assert (await people.register_agent("jti_2", "sp_1", "inst_a", "{}", "ac_a", NOW + 2)) is False  # not its token
    assert (await people.space_by_credential("ac_a")) is None


async def test_ssh_health_is_kept_until_reported_again_and_cleared_by_up_or_down(people: Store) -> None:
    await people.create_space(space("sp_1", "u_alice", "demo"), [])
    await people.add_token(token("jti_1", "sp_1"))
    await people.register_agent("jti_1", "sp_1", "inst_1", "{}", "ac_hash", NOW)
    down = '{"serving":false,"reason":"sshd exited.","supervisor_state":"FATAL"}'
    await people.heartbeat("sp_1", "starting", NOW + 1, None, down)
    await people.heartbeat("sp_1", "starting", NOW + 2, None)  # an agent that does not report it
    record = await people.space("sp_1")
    assert record is not None
    assert (record.state, record.ssh) == ("starting", down)
    await people.set_desired_state("sp_1", "running", "starting", NOW + 3)  # `up`: unknown until reported
    record = await people.space("sp_1")
    assert record is not None
    assert record.ssh is None


async def test_silent_spaces_are_stopped_whether_running_starting_or_stopping(people: Store) -> None:
    states: list[SpaceState] = ["starting", "running", "stopping", "stopped", "created"]
    for n, state in enumerate(states):
        sid = f"sp_{n}"
        await people.create_space(space(sid, "u_alice", f"s{n}"), [])
        await people.heartbeat(sid, state, NOW, None)
    stopped = await people.stop_silent_spaces(NOW + 1, NOW + 40)
    assert sorted(stopped) == ["sp_0", "sp_1", "sp_2"]


async def test_deleting_twice_keeps_the_first_deletion_time(people: Store) -> None:
    await people.create_space(space("sp_1", "u_alice", "demo"), [])
    await people.delete_space("sp_1", NOW + 1)
    await people.delete_space("sp_1", NOW + 50)
    tombstone = await people.space("sp_1")
    assert tombstone is not None
    assert tombstone.deleted_at == NOW + 1


async def test_a_write_by_this_store_is_read_back_at_once(people: Store) -> None:
    await people.create_space(space("sp_1", "u_alice", "demo"), ["u_bob"])
    assert (await people.shares_of(["sp_1"])) == {"sp_1": ["bob@example.com"]}

    await people.update_shares("sp_1", ["u_carol"], ["u_bob"], NOW + 1)

    assert (await people.shares_of(["sp_1"])) == {"sp_1": ["carol@example.com"]}


async def test_a_commit_by_another_process_is_read_by_the_next_request(people: Store, backend: Backend) -> None:
    # `pair-broker users remove` and friends write through their own connection while the broker
    # serves. The next request runs in a later step of the event loop (SQLite reads data_version
    # once per step: broker/store/sqlite.py).
    await people.create_space(space("sp_1", "u_alice", "demo"), [])
    await people.create_session(session("se_1", "u_alice"), "st_1")
    assert [s.id for s in (await people.visible_spaces("u_alice"))] == ["sp_1"]
    assert (await people.session_by_token("st_1", NOW)) is not None

    backend.execute(f"UPDATE spaces SET deleted_at = {NOW + 1} WHERE id = 'sp_1'")
    backend.execute(f"UPDATE sessions SET revoked_at = {NOW + 1} WHERE id = 'se_1'")
    await asyncio.sleep(0)

    assert (await people.visible_spaces("u_alice")) == []
    assert (await people.session_by_token("st_1", NOW + 2)) is None


async def test_an_agent_credential_cleared_elsewhere_stops_working_by_the_next_request(
    people: Store, backend: Backend
) -> None:
    await people.create_space(space("sp_1", "u_alice", "demo"), [])
    await people.add_token(token("jti_1", "sp_1"))
    await people.register_agent("jti_1", "sp_1", "inst_1", "{}", "ac_hash", NOW + 1)
    assert (await people.space_by_credential("ac_hash")) is not None

    backend.execute("UPDATE spaces SET agent_credential_hash = NULL WHERE id = 'sp_1'")
    await asyncio.sleep(0)

    assert (await people.space_by_credential("ac_hash")) is None


async def test_rows_of_a_rolled_back_transaction_are_never_read_back(people: Store) -> None:
    assert (await people.visible_spaces("u_alice")) == []

    async def fail_after_creating() -> None:
        async with people.transaction() as tx:
            await tx.create_space(space("sp_1", "u_alice", "demo"), ["u_bob"])
            assert [s.id for s in await tx.visible_spaces("u_alice")] == ["sp_1"]
            raise RuntimeError("the request failed after its first write")

    with pytest.raises(RuntimeError):
        await fail_after_creating()

    assert (await people.visible_spaces("u_alice")) == []
    assert (await people.visible_spaces("u_bob")) == []


async def test_changing_a_returned_list_does_not_change_the_next_answer(people: Store) -> None:
    await people.create_space(space("sp_1", "u_alice", "demo"), ["u_bob"])
    (await people.visible_spaces("u_alice")).clear()
    (await people.shares_of(["sp_1"]))["sp_1"].append("mallory@example.com")

    assert [s.id for s in (await people.visible_spaces("u_alice"))] == ["sp_1"]
    assert (await people.shares_of(["sp_1"])) == {"sp_1": ["bob@example.com"]}


async def test_an_expired_session_is_refused_even_when_remembered(people: Store) -> None:
    await people.create_session(session("se_1", "u_alice", expires_at=NOW + 100), "st_1")
    assert (await people.session_by_token("st_1", NOW)) is not None
    assert (await people.session_by_token("st_1", NOW + 100)) is None


async def test_audit_log_gives_the_newest_entries_oldest_first_and_filters(store: Store) -> None:
    entries = [
        (NOW, "alice@example.com", "space.create", "sp_1", "demo"),
        (NOW + 1, "alice@example.com", "space.share", "sp_1", "bob@example.com"),
        (NOW + 2, "agent:sp_1", "space.running", "sp_1", ""),
        (NOW + 3, "bob@example.com", "session.create", "ses_1", "cli"),
        (NOW + 4, "alice@example.com", "spacey.thing", "sp_2", ""),
        (NOW + 5, "alice@example.com", "space.delete", "sp_1", "demo"),
    ]
    for entry in entries:
        await store.audit(*entry)

    async def actions(**filters: Any) -> list[str]:
        return [e.action for e in await store.audit_log(**{"limit": 50, **filters})]

    assert await actions(limit=2) == ["spacey.thing", "space.delete"]
    assert await actions() == [e[2] for e in entries]
    assert await actions(since=NOW + 3) == ["session.create", "spacey.thing", "space.delete"]
    assert await actions(actor="agent:sp_1") == ["space.running"]
    assert await actions(action="space") == ["space.create", "space.share", "space.running", "space.delete"]
    assert await actions(action="space.delete") == ["space.delete"]
    assert await actions(target="sp_1", actor="alice@example.com") == ["space.create", "space.share", "space.delete"]
    first = (await store.audit_log(limit=1, target="ses_1"))[0]
    assert (first.at, first.actor, first.target, first.detail) == (NOW + 3, "bob@example.com", "ses_1", "cli")


# -- the connection log (every stream) ------------------------------------------------------------


async def test_the_connection_log_lists_open_streams_of_every_kind_oldest_first(people: Store) -> None:
    await people.create_space(space("sp_1", "u_alice", "demo"), ["u_bob"])
    await people.create_space(space("sp_2", "u_alice", "other"), [])
    await people.open_stream(stream("ssh_2", "sp_1", "u_bob", "terminal", at=NOW + 2))
    await people.open_stream(stream("ssh_1", "sp_1", "u_alice", "ssh", at=NOW + 1))
    await people.open_stream(stream("tcp_1", "sp_1", "u_bob", "port", at=NOW + 3))
    await people.open_stream(stream("ssh_9", "sp_2", "u_alice"))

    listed = await people.open_streams("sp_1")
    assert [(t.id, t.kind, t.email, t.opened_at) for t in listed] == [
        ("ssh_1", "ssh", "alice@example.com", NOW + 1),
        ("ssh_2", "terminal", "bob@example.com", NOW + 2),
        ("tcp_1", "port", "bob@example.com", NOW + 3),
    ]
    assert listed[0] == stream("ssh_1", "sp_1", "u_alice", "ssh", at=NOW + 1)  # every field read back


async def test_a_closed_stream_leaves_the_open_list_and_closing_it_again_is_harmless(people: Store) -> None:
    await people.create_space(space("sp_1", "u_alice", "demo"), [])
    await people.open_stream(stream("ssh_1", "sp_1", "u_alice"))
    await people.open_stream(stream("ssh_2", "sp_1", "u_alice", "terminal"))

    await people.close_stream("ssh_1", NOW + 5, 100, 2000, "ssh ended")
    await people.close_stream("ssh_1", NOW + 9, 1, 1, "again")

    assert [t.id for t in await people.open_streams("sp_1")] == ["ssh_2"]
    await people.close_dangling_streams(NOW + 10)  # a broker restarted: what it held open ended
    assert await people.open_streams("sp_1") == []


async def test_a_log_kept_before_streams_were_named_so_is_read_as_streams(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration streams_rename: a database whose connection log is still the table `tunnels`
    (every migration before it applied) keeps its rows, now `streams`, with the open-stream index
    under its new name."""
    shipped = migrations.available(backend.name)
    rename = next(m for m in shipped if m.name.startswith(f"{m.version:04d}_streams_rename."))
    if isinstance(backend, stores.PostgresBackend):  # an empty database, not the migrated template
        backend.drop()
        backend.url = backend.server.create_database(migrated=False)
    monkeypatch.setattr(migrations, "available", lambda dialect: [m for m in shipped if m.version < rename.version])
    old = await backend.open()
    await stores.add_people(old)
    await old.create_space(space("sp_1", "u_alice", "demo"), [])
    await old.close()
    backend.execute(
        "INSERT INTO tunnels (id, space_id, user_id, email, client_address, opened_at, kind)"
        f" VALUES ('tun_1', 'sp_1', 'u_alice', 'alice@example.com', '192.0.2.1', {NOW}, 'ssh')"
    )
    monkeypatch.undo()

    renamed = await backend.open()
    try:
        assert await renamed.open_streams("sp_1") == [stream("tun_1", "sp_1", "u_alice")]
    finally:
        await renamed.close()
    if backend.name == "sqlite":
        indexes = backend.rows("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'streams'")
        tables = backend.rows("SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        indexes = backend.rows("SELECT indexname FROM pg_indexes WHERE tablename = 'streams'")
        tables = backend.rows("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
    assert ("streams_space_open",) in indexes
    assert not any("tunnel" in name for (name,) in indexes + tables)


# -- shared ports -----------------------------------------------------------------------------------


def port(space_id: str, number: int, address: str, level: PortLevel = "owner", *, at: int = NOW) -> PortRecord:
    return PortRecord(space_id, number, level, "", address, at, at)


async def test_a_handle_is_given_once_and_is_one_users(people: Store) -> None:
    assert await people.user_handle("u_alice") is None
    assert await people.set_user_handle("u_alice", "alice")
    assert await people.set_user_handle("u_alice", "other")  # she has one: it stays
    assert await people.user_handle("u_alice") == "alice"
    assert not await people.set_user_handle("u_bob", "alice")  # another user's
    assert await people.user_handle("u_bob") is None
    assert await people.user("u_bob") == user("u_bob", "bob@example.com")
    assert await people.user("u_nobody") is None


async def test_a_handle_taken_inside_a_transaction_aborts_it(people: Store) -> None:
    await people.set_user_handle("u_alice", "alice")

    async def try_to_take_it() -> None:
        async with people.transaction() as tx:
            assert not await tx.set_user_handle("u_bob", "alice")
            with pytest.raises(TransactionAborted):  # as after any failed statement, on every backend
                await tx.user_handle("u_bob")

    with pytest.raises(TransactionAborted):
        await try_to_take_it()


async def test_a_shared_port_is_found_by_address_and_changed_in_place(people: Store) -> None:
    await people.create_space(space("sp_1", "u_alice", "demo"), [])
    await people.share_port(port("sp_1", 8080, "8080--demo--alice"))
    await people.share_port(port("sp_1", 3000, "3000--demo--alice"))
    await people.share_port(port("sp_1", 8080, "8080--demo--alice", "public", at=NOW + 5))  # a new level

    assert [(p.port, p.level) for p in await people.shared_ports("sp_1")] == [(3000, "owner"), (8080, "public")]
    found = await people.shared_port("8080--demo--alice")
    assert found == PortRecord("sp_1", 8080, "public", "", "8080--demo--alice", NOW, NOW + 5)  # created stays
    assert await people.shared_port("9999--demo--alice") is None


async def test_an_address_is_one_ports_until_its_space_is_deleted(people: Store) -> None:
    await people.create_space(space("sp_1", "u_alice", "demo"), [])
    await people.create_space(space("sp_2", "u_alice", "other"), [])
    await people.share_port(port("sp_1", 8080, "8080--demo--alice"))
    with pytest.raises(Conflict):
        await people.share_port(port("sp_2", 8080, "8080--demo--alice"))

    await people.delete_space("sp_1", NOW + 1)
    assert await people.shared_port("8080--demo--alice") is None
    await people.share_port(port("sp_2", 8080, "8080--demo--alice"))  # free again
    assert (await people.shared_port("8080--demo--alice")) == port("sp_2", 8080, "8080--demo--alice")


async def test_unsharing_returns_what_was_shared_once(people: Store) -> None:
    await people.create_space(space("sp_1", "u_alice", "demo"), [])
    await people.share_port(port("sp_1", 8080, "8080--demo--alice"))
    assert await people.unshare_port("sp_1", 8080) == port("sp_1", 8080, "8080--demo--alice")
    assert await people.unshare_port("sp_1", 8080) is None
    assert await people.shared_ports("sp_1") == []


async def test_a_ticket_is_claimed_once_until_it_expires(store: Store) -> None:
    assert await store.claim_ticket("n1", NOW + 60, NOW)
    assert not await store.claim_ticket("n1", NOW + 60, NOW + 1)
    assert await store.claim_ticket("n2", NOW + 60, NOW + 1)
    assert await store.claim_ticket("n1", NOW + 120, NOW + 60)  # expired: forgotten


# -- transactions ----------------------------------------------------------------------------------


async def test_a_transaction_commits_its_calls_together_when_its_block_ends(people: Store, backend: Backend) -> None:
    other = await backend.open()  # another broker process
    try:
        async with people.transaction() as tx:
            await tx.create_space(space("sp_1", "u_alice", "demo"), ["u_bob"])
            await tx.audit(NOW, "alice@example.com", "space.create", "sp_1", "demo")
            assert await other.space("sp_1") is None  # nothing is seen before the commit
        found = await other.space("sp_1")
        assert found is not None
        assert await other.shares("sp_1") == ["bob@example.com"]
        assert [e.target for e in await other.audit_log(limit=5)] == ["sp_1"]
    finally:
        await other.close()


async def test_a_conflict_aborts_its_transaction_and_nothing_of_it_stays(people: Store) -> None:
    await people.create_space(space("sp_1", "u_alice", "demo"), [])

    async def carry_on_after_a_conflict() -> None:
        async with people.transaction() as tx:
            await tx.create_space(space("sp_2", "u_alice", "other"), [])
            with pytest.raises(Conflict) as clash:
                await tx.create_space(space("sp_3", "u_alice", "demo"), [])
            assert clash.value.rule == "spaces.name"
            # PostgreSQL refuses everything after a failed statement; so does every backend.
            with pytest.raises(TransactionAborted):
                await tx.audit(NOW, "alice@example.com", "space.create", "sp_2", "other")
            with pytest.raises(TransactionAborted):
                await tx.space("sp_2")

    with pytest.raises(TransactionAborted):  # leaving the block normally: rolled back, and said so
        await carry_on_after_a_conflict()
    assert [s.id for s in await people.visible_spaces("u_alice")] == ["sp_1"]
    assert await people.audit_log(limit=5) == []


async def test_a_savepoint_undoes_only_itself_after_a_conflict(people: Store) -> None:
    await people.create_space(space("sp_1", "u_alice", "demo"), [])
    async with people.transaction() as tx:
        await tx.create_space(space("sp_2", "u_alice", "other"), [])
        with pytest.raises(Conflict):
            async with tx.transaction() as attempt:
                await attempt.create_space(space("sp_3", "u_alice", "demo"), ["u_bob"])
        async with tx.transaction() as attempt:  # the next attempt, in a savepoint of its own
            await attempt.create_space(space("sp_4", "u_alice", "demo_2"), ["u_bob"])
        await tx.audit(NOW, "alice@example.com", "space.create", "sp_4", "demo_2")
    assert [s.id for s in await people.visible_spaces("u_alice")] == ["sp_1", "sp_4", "sp_2"]  # demo, demo_2, other
    assert [s.id for s in await people.visible_spaces("u_bob")] == ["sp_4"]
    assert [e.target for e in await people.audit_log(limit=5)] == ["sp_4"]


async def test_a_savepoint_that_raises_is_rolled_back_and_the_transaction_goes_on(people: Store) -> None:
    async with people.transaction() as tx:
        await tx.create_space(space("sp_1", "u_alice", "demo"), [])

        async def change_its_mind() -> None:
            async with tx.transaction() as inner:
                await inner.create_space(space("sp_2", "u_alice", "other"), [])
                raise RuntimeError("changed its mind")

        with pytest.raises(RuntimeError):
            await change_its_mind()
        assert await tx.space("sp_2") is None
    assert [s.id for s in await people.visible_spaces("u_alice")] == ["sp_1"]


async def test_a_conflict_outside_a_transaction_leaves_nothing_behind(people: Store) -> None:
    await people.add_ssh_key(ssh_key("k1", "u_alice"))
    with pytest.raises(Conflict) as clash:
        await people.add_ssh_key(dataclasses.replace(ssh_key("k2", "u_bob"), fingerprint="SHA256:k1"))
    assert clash.value.rule == "ssh_keys.fingerprint"
    with pytest.raises(Conflict) as clash:
        await people.create_user(user("u_other", "alice@example.com"), "ak_other")
    assert clash.value.rule == "users.email"
    await people.add_ssh_key(ssh_key("k3", "u_bob"))  # the store goes on
    assert [k.id for k in await people.ssh_keys("u_bob")] == ["k3"]


async def test_a_transaction_is_over_when_its_block_ends(people: Store) -> None:
    async with people.transaction() as tx:
        await tx.create_space(space("sp_1", "u_alice", "demo"), [])
    with pytest.raises(StoreError):
        await tx.space("sp_1")
    assert await people.space("sp_1") is not None


# -- reusable Space keys ----------------------------------------------------------------------------


async def test_a_space_key_name_is_unique_per_owner_among_keys_not_revoked(people: Store) -> None:
    await people.create_space_key(SpaceKeyRecord("sk_1", "u_alice", "ci", "kh_1", NOW, None), ["u_bob"])
    with pytest.raises(Conflict) as taken:
        await people.create_space_key(SpaceKeyRecord("sk_2", "u_alice", "ci", "kh_2", NOW, None), [])
    assert taken.value.rule == "space_keys.name"
    await people.create_space_key(SpaceKeyRecord("sk_3", "u_bob", "ci", "kh_3", NOW, None), [])  # another owner's
    await people.revoke_space_key("sk_1", NOW + 5)
    await people.revoke_space_key("sk_1", NOW + 9)  # revoking again keeps the first time
    await people.create_space_key(SpaceKeyRecord("sk_4", "u_alice", "ci", "kh_4", NOW + 10, NOW + 99), [])
    keys = await people.space_keys("u_alice")
    assert [(k.id, k.revoked_at, k.expires_at) for k in keys] == [("sk_1", NOW + 5, None), ("sk_4", None, NOW + 99)]
    found = await people.space_key_by_hash("kh_4")
    assert found is not None and found.id == "sk_4"
    assert await people.space_key_by_hash("kh_nobody") is None
    assert await people.space_key_shares(["sk_1", "sk_4"]) == {"sk_1": ["bob@example.com"], "sk_4": []}
    assert await people.space_key_user_ids("sk_1") == ["u_bob"]


async def test_a_space_key_keeps_the_template_it_names_and_none_means_the_default(people: Store) -> None:
    """Migration 0012: the template a key makes its Spaces from, kept by name (not a reference:
    removing the template leaves the name, so registration can say which one is gone)."""
    await people.add_template(TemplateRecord("large", "", 3, 5, False, NOW))
    await people.create_space_key(SpaceKeyRecord("sk_1", "u_alice", "ci", "kh_1", NOW, None, template="large"), [])
    await people.create_space_key(SpaceKeyRecord("sk_2", "u_alice", "docs", "kh_2", NOW + 1, None), [])
    keys = await people.space_keys("u_alice")
    assert [(k.id, k.template) for k in keys] == [("sk_1", "large"), ("sk_2", None)]
    assert await people.remove_template("large")
    found = await people.space_key_by_hash("kh_1")
    assert found is not None and found.template == "large"  # the name stays
    await people.revoke_space_key("sk_1", NOW + 2)
    assert [k.template for k in await people.space_keys("u_alice")] == ["large", None]


async def test_a_keyed_space_is_found_by_its_container_name_and_one_per_key(people: Store) -> None:
    await people.create_space_key(SpaceKeyRecord("sk_1", "u_alice", "ci", "kh_1", NOW, None), [])
    keyed = dataclasses.replace(space("sp_1", "u_alice", "box"), space_key_id="sk_1", container_name="box")
    await people.create_space(keyed, ["u_bob"])
    again = dataclasses.replace(space("sp_2", "u_alice", "box-2"), space_key_id="sk_1", container_name="box")
    with pytest.raises(Conflict) as same:
        await people.create_space(again, [])
    assert same.value.rule == "spaces.container"
    found = await people.space_for_container("sk_1", "box")
    assert found is not None and found.id == "sp_1" and found.owner_email == "alice@example.com"
    await people.register_keyed_agent("sk_1", "sp_1", "inst_1", "{}", "ac_1", NOW + 1)
    await people.register_keyed_agent("sk_1", "sp_1", "inst_2", "{}", "ac_2", NOW + 2)  # a rebuild
    assert await people.space_by_credential("ac_1") is None  # the earlier container's credential died
    registered = await people.space_by_credential("ac_2")
    assert registered is not None and registered.instance_id == "inst_2"
    [key] = await people.space_keys("u_alice")
    assert (key.uses, key.last_used_at) == (2, NOW + 2)
    assert [s.id for s in await people.spaces_of_key("sk_1")] == ["sp_1"]
    await people.delete_space("sp_1", NOW + 3)
    assert await people.space_for_container("sk_1", "box") is None  # a deleted Space is not revived
    assert await people.spaces_of_key("sk_1") == []
    await people.create_space(again, [])  # the name per key is free again


# -- templates, groups and quotas (issue 16) -------------------------------------------------------


async def test_templates_have_one_default_at_most(people: Store) -> None:
    await people.add_template(TemplateRecord("small", "", 1, 2, True, NOW))
    await people.add_template(TemplateRecord("large", "big one", 3, 5, True, NOW))
    assert [(t.name, t.is_default) for t in await people.templates()] == [("large", True), ("small", False)]
    with pytest.raises(Conflict) as taken:
        await people.add_template(TemplateRecord("small", "", 1, 1, False, NOW))
    assert taken.value.rule == "templates.name"
    assert await people.set_default_template("small")
    assert not await people.set_default_template("nosuch")
    default = await people.default_template()
    assert default is not None
    assert default.name == "small"
    assert await people.remove_template("small")
    assert await people.default_template() is None
    assert not await people.remove_template("small")


async def test_a_group_share_reaches_members_once_and_never_the_owner_twice(people: Store) -> None:
    await people.create_space(space("sp_1", "u_alice", "demo"), ["u_bob"])
    for uid in ("u_alice", "u_bob", "u_carol"):
        await people.add_ssh_key(ssh_key(f"k_{uid}", uid))
    await people.create_group(GroupRecord("grp_1", "eng", NOW, Limits()))
    with pytest.raises(Conflict) as taken:
        await people.create_group(GroupRecord("grp_2", "eng", NOW, Limits()))
    assert taken.value.rule == "groups.name"
    await people.add_group_members("grp_1", ["u_alice", "u_bob", "u_carol"], NOW)
    await people.add_group_members("grp_1", ["u_bob"], NOW)  # already in: stays once
    assert not await people.is_shared_with("sp_1", "u_carol")
    await people.update_group_shares("sp_1", ["grp_1"], [], NOW)

    assert await people.is_shared_with("sp_1", "u_carol")
    for uid in ("u_alice", "u_bob", "u_carol"):
        assert [s.id for s in await people.visible_spaces(uid)] == ["sp_1"]
    keys = await people.authorized_keys("sp_1")
    assert [(k.email, k.role) for k in keys] == [
        ("alice@example.com", "owner"),
        ("bob@example.com", "shared"),
        ("carol@example.com", "shared"),
    ]
    assert await people.group_shares_of(["sp_1", "sp_x"]) == {"sp_1": ["eng"], "sp_x": []}
    assert [s.id for s in await people.spaces_shared_with_group("grp_1")] == ["sp_1"]
    group = await people.group("eng")
    assert group is not None
    assert group.members == ("alice@example.com", "bob@example.com", "carol@example.com")

    await people.remove_group_members("grp_1", ["u_carol"])
    assert not await people.is_shared_with("sp_1", "u_carol")
    assert await people.visible_spaces("u_carol") == []
    await people.remove_group("grp_1")
    assert await people.groups() == []
    assert await people.is_shared_with("sp_1", "u_bob")  # still shared with bob directly


async def test_quotas_are_set_per_user_and_group(people: Store) -> None:
    await people.set_user_quota("u_alice", Limits(compute=4))
    await people.create_group(GroupRecord("grp_1", "eng", NOW, Limits(spaces=2)))
    await people.set_group_quota("grp_1", Limits(compute=6))
    await people.add_group_members("grp_1", ["u_alice"], NOW)
    assert await people.quotas_of("u_alice") == (Limits(compute=4), [("eng", Limits(compute=6))])
    assert await people.quotas_of("u_bob") == (Limits(), [])


async def test_net_bytes_counts_connections_that_ended_in_the_window(people: Store) -> None:
    await people.create_space(space("sp_1", "u_alice", "demo"), [])
    for tid, closed in (("t_old", NOW - 10), ("t_new", NOW + 10), ("t_open", None)):
        await people.open_stream(StreamRecord(tid, "sp_1", "u_alice", "alice@example.com", "", NOW - 20))
        if closed is not None:
            await people.close_stream(tid, closed, 100, 1000 if tid == "t_new" else 7, "done")
    assert await people.net_bytes(["sp_1", "sp_2"], NOW) == {"sp_1": 1100, "sp_2": 0}


# -- the outbox (broker.outbox) -------------------------------------------------------------------


async def test_the_outbox_hands_messages_out_in_order_after_an_id_and_forgets_old_ones(store: Store) -> None:
    assert await store.outbox_newest() == 0
    assert await store.outbox_after(0, 10) == []
    payloads = [b"one", b"\x00two\xff", b"three"]
    for i, payload in enumerate(payloads):
        await store.outbox_put(f"pair_chan{i}", payload, NOW + i)
    found = await store.outbox_after(0, 10)
    assert [(channel, payload) for _, channel, payload in found] == [
        ("pair_chan0", b"one"),
        ("pair_chan1", b"\x00two\xff"),
        ("pair_chan2", b"three"),
    ]
    ids = [message_id for message_id, _, _ in found]
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert await store.outbox_newest() == ids[-1]
    assert [m[0] for m in await store.outbox_after(ids[0], 10)] == ids[1:]
    assert [m[0] for m in await store.outbox_after(0, 2)] == ids[:2]

    await store.outbox_trim(NOW + 2)  # the two older go
    assert [m[0] for m in await store.outbox_after(0, 10)] == ids[2:]
    await store.outbox_trim(NOW + 3)
    assert await store.outbox_after(0, 10) == []
    await store.outbox_put("pair_chan", b"four", NOW + 4)  # an id is never reused
    [(newer, _, _)] = await store.outbox_after(0, 10)
    assert newer > ids[-1]


async def test_an_outbox_message_put_in_a_transaction_that_rolls_back_is_not_handed_out(store: Store) -> None:
    async def change_its_mind() -> None:
        async with store.transaction() as tx:
            await tx.outbox_put("pair_chan", b"undone", NOW)
            raise RuntimeError("changed its mind")

    with pytest.raises(RuntimeError):
        await change_its_mind()
    assert await store.outbox_after(0, 10) == []


# -- token signing keys (sealed) ------------------------------------------------------------------


async def test_signing_keys_are_kept_oldest_first_and_unique_by_id(store: Store) -> None:
    await store.add_signing_key(SealedKeyRecord("kid_b", NOW + 10, "sealed-b"))
    await store.add_signing_key(SealedKeyRecord("kid_a", NOW, "sealed-a"))
    with pytest.raises(Conflict) as clash:
        await store.add_signing_key(SealedKeyRecord("kid_a", NOW + 20, "other"))
    assert clash.value.rule == "signing_keys.kid"
    assert [(k.kid, k.sealed) for k in await store.signing_keys()] == [("kid_a", "sealed-a"), ("kid_b", "sealed-b")]
    await store.remove_signing_keys(["kid_a", "kid_unknown"])
    assert [k.kid for k in await store.signing_keys()] == ["kid_b"]


# -- replicas and where agents' channels are held ---------------------------------------------------


async def test_a_starting_replica_closes_only_the_streams_of_replicas_that_are_gone(people: Store) -> None:
    await people.create_space(space("sp_1", "u_alice", "demo"), [])
    await people.open_stream(dataclasses.replace(stream("ssh_1", "sp_1", "u_alice"), replica_id="rep_live"))
    await people.open_stream(dataclasses.replace(stream("ssh_2", "sp_1", "u_alice"), replica_id="rep_dead"))
    await people.open_stream(stream("ssh_3", "sp_1", "u_alice"))  # a single broker's (no replica)
    assert [t.replica_id for t in await people.open_streams("sp_1")] == ["rep_live", "rep_dead", ""]

    await people.close_dangling_streams(NOW + 10, keep=["rep_live", "rep_other"])
    assert [t.id for t in await people.open_streams("sp_1")] == ["ssh_1"]


async def test_replicas_beat_and_the_live_ones_are_those_seen_lately(store: Store) -> None:
    await store.beat_replica(ReplicaRecord("rep_b", "http://10.0.0.2:8000", NOW, NOW))
    await store.beat_replica(ReplicaRecord("rep_a", "http://10.0.0.1:8000", NOW, NOW))
    await store.beat_replica(ReplicaRecord("rep_a", "http://10.0.0.9:8000", NOW + 99, NOW + 5))  # moved; started stays
    assert await store.live_replicas(NOW) == [
        ReplicaRecord("rep_a", "http://10.0.0.9:8000", NOW, NOW + 5),
        ReplicaRecord("rep_b", "http://10.0.0.2:8000", NOW, NOW),
    ]
    assert [r.id for r in await store.live_replicas(NOW + 1)] == ["rep_a"]


async def test_replicas_gone_long_are_forgotten_with_their_agent_channels(store: Store) -> None:
    live = ReplicaRecord("rep_live", "http://a:8000", NOW, NOW + 60)
    gone = ReplicaRecord("rep_gone", "http://b:8000", NOW, NOW)
    assert await store.beat_replica(live) is False  # a first beat registers it
    assert await store.beat_replica(gone) is False
    assert await store.beat_replica(live) is True
    await store.hold_agent_channel("sp_1", "rep_gone", NOW)
    await store.hold_agent_channel("sp_2", "rep_live", NOW)

    assert await store.forget_replicas(NOW) == []  # seen at NOW is not before NOW
    assert await store.forget_replicas(NOW + 1) == ["rep_gone"]
    assert await store.forget_replicas(NOW + 1) == []
    assert await store.live_replicas(0) == [live]
    held = await store.agent_channel("sp_2")
    assert held is not None and held.replica == live
    # A replica forgotten while it lives (a process stalled that long) hears so from its next beat,
    # and its old channels are not back: it records the ones it holds again.
    assert await store.beat_replica(dataclasses.replace(gone, seen_at=NOW + 61)) is False
    assert [r.id for r in await store.live_replicas(NOW + 60)] == ["rep_gone", "rep_live"]
    assert await store.agent_channel("sp_1") is None


async def test_an_agent_channel_is_held_by_one_replica_and_released_only_by_it(store: Store) -> None:
    a = ReplicaRecord("rep_a", "http://a:8000", NOW, NOW)
    b = ReplicaRecord("rep_b", "http://b:8000", NOW, NOW + 1)
    await store.beat_replica(a)
    await store.beat_replica(b)
    assert await store.agent_channel("sp_1") is None
    await store.hold_agent_channel("sp_1", "rep_a", NOW)
    assert await store.agent_channel("sp_1") == AgentChannelRecord("sp_1", a, attached_at=NOW)
    await store.report_agent("sp_1", "rep_a", '[{"id":"t1"}]', "[8080]")
    assert await store.agent_channel("sp_1") == AgentChannelRecord("sp_1", a, '[{"id":"t1"}]', "[8080]", NOW)
    await store.hold_agent_channel("sp_1", "rep_b", NOW + 1)  # the agent reconnected elsewhere: nothing reported yet
    await store.release_agent_channel("sp_1", "rep_a")  # the old channel's late goodbye changes nothing
    await store.report_agent("sp_1", "rep_a", "[]", "[1]")  # nor does its late report
    assert await store.agent_channel("sp_1") == AgentChannelRecord("sp_1", b, attached_at=NOW + 1)
    await store.hold_agent_channel("sp_2", "rep_b", NOW)
    await store.remove_replica("rep_b")  # it stopped: its channels go with it
    assert await store.agent_channel("sp_1") is None
    assert await store.agent_channel("sp_2") is None
    assert await store.live_replicas(0) == [a]


# -- the order of lists whose rows share a time -----------------------------------------------------


async def test_access_requests_of_one_second_are_listed_by_email_never_by_their_random_ids(store: Store) -> None:
    """Ids are random (req_…): with them as the tie-break, two requests filed in one second came
    out in an order that differed between runs (and could between backends)."""
    filed = [("req_c", "zoe@example.com"), ("req_a", "mia@example.com"), ("req_b", "ada@example.com")]
    for n, (rid, email) in enumerate(filed):
        request = AccessRequestRecord(rid, email, "", "192.0.2.1", "pending", NOW, NOW + 86400)
        await store.add_access_request(request, f"dc_{n}")
    await store.add_access_request(
        AccessRequestRecord("req_0", "bob@example.com", "", "192.0.2.1", "pending", NOW - 1, NOW + 86400), "dc_early"
    )
    expected = ["bob@example.com", "ada@example.com", "mia@example.com", "zoe@example.com"]
    assert [r.email for r in await store.access_requests()] == expected
    assert [r.email for r in await store.access_requests("pending")] == expected


async def test_space_keys_and_their_spaces_of_one_second_are_listed_by_name(people: Store) -> None:
    for kid, name in (("sk_c", "web"), ("sk_a", "docs"), ("sk_b", "ci")):
        await people.create_space_key(SpaceKeyRecord(kid, "u_alice", name, f"kh_{kid}", NOW, None), [])
    assert [k.name for k in await people.space_keys("u_alice")] == ["ci", "docs", "web"]
    for sid, name in (("sp_z", "box-a"), ("sp_a", "box-c"), ("sp_m", "box-b")):
        keyed = dataclasses.replace(space(sid, "u_alice", name), space_key_id="sk_a", container_name=name)
        await people.create_space(keyed, [])
    assert [s.name for s in await people.spaces_of_key("sk_a")] == ["box-a", "box-b", "box-c"]
