"""What replicas prove and tell each other (broker.replicas, broker.peering): the shared secret
every replica derives from the encryption key, its constant-time check, the internal URL built
from a registered address, the leg header, refused unless it holds exactly a leg, and the app
credentials' key, derived the same way; the registry forgetting replicas gone long."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker import peering, ports, replicas
from broker.apps.auth import CredentialRejected
from broker.context import Context
from broker.hub import AgentLink, Hub, Leg
from broker.links import Link
from broker.replicas import Replica
from broker.settings import Settings
from broker.store import ReplicaRecord
from broker.store.sqlite import SqliteStore

KEY = bytes(range(32))


def test_every_replica_derives_the_same_secret_and_another_key_another() -> None:
    secret = replicas.derive_secret(KEY)
    assert secret == replicas.derive_secret(bytes(KEY))
    assert len(base64.urlsafe_b64decode(secret + "=")) == 32
    assert secret != replicas.derive_secret(bytes(range(1, 33)))
    assert base64.b64encode(KEY).decode().rstrip("=") not in secret  # the key itself never travels


def test_only_the_exact_secret_is_admitted() -> None:
    replica = Replica("rep_a", "http://10.0.0.1:8000", replicas.derive_secret(KEY), 0)
    assert replica.admits(replica.authorization())
    for wrong in (None, "", replica.secret, f"Bearer {replica.secret}x", f"bearer {replica.secret}", "Bearer ü"):
        assert not replica.admits(wrong)
    other = Replica("rep_b", "http://10.0.0.2:8000", replicas.derive_secret(bytes(32)), 0)
    assert not replica.admits(other.authorization())


def test_a_replica_is_alive_while_it_beats() -> None:
    record = ReplicaRecord("rep_a", "http://a", 0, 100)
    assert replicas.alive(record, 100 + replicas.LIVE_FOR)
    assert not replicas.alive(record, 101 + replicas.LIVE_FOR)


@pytest.mark.parametrize(
    ("address", "url"),
    [
        ("http://10.0.0.1:8000", "ws://10.0.0.1:8000/internal/v1/streams/tun_aaaaaaaaaaaa"),
        ("https://b.internal/", "wss://b.internal/internal/v1/streams/tun_aaaaaaaaaaaa"),
        ("http://[fd00::1]:8000/pair", "ws://[fd00::1]:8000/pair/internal/v1/streams/tun_aaaaaaaaaaaa"),
    ],
)
def test_the_internal_url_is_the_registered_address_over_websockets(address: str, url: str) -> None:
    assert peering.peer_url(address, "tun_aaaaaaaaaaaa") == url


def test_a_leg_travels_in_its_header_and_nothing_else_passes_for_one() -> None:
    leg = Leg("sp_aaaaaaaaaaaa", "usr_bob", "bøb@example.com", "terminal", "")
    header = peering.encode_leg(leg)
    assert header.isascii()
    assert peering.decode_leg(header) == leg
    for garbage in ("", "!!!", base64.urlsafe_b64encode(b'{"space_id": 1}').decode()):
        with pytest.raises(ValueError, match="not a stream leg"):
            peering.decode_leg(garbage)
    wrong_kind = base64.urlsafe_b64encode(
        b'{"space_id":"sp_a","user_id":"u","email":"e","kind":"shell","app":""}'
    ).decode()
    with pytest.raises(ValueError, match="not a stream leg"):
        peering.decode_leg(wrong_kind)


@given(st.text(max_size=200))
def test_any_header_text_is_a_leg_or_refused_with_a_value_error(text: str) -> None:
    outcome: Leg | str
    try:
        outcome = peering.decode_leg(text)
    except ValueError as exc:  # any other exception fails the test
        outcome = str(exc)
    assert isinstance(outcome, Leg) or outcome.startswith("not a stream leg")


def test_an_app_cookie_one_replica_issues_another_accepts(tmp_path: Path) -> None:
    """The app-origin credentials' key is no file among replicas: each derives it from the
    encryption key, so a cookie (or ticket) made on one is good on another, with its own data dir."""

    def replica_ctx(name: str) -> Context:
        replica = Replica(f"rep_{name}", "http://x", "", 0, app_secret=replicas.derive(KEY, replicas.APP_SECRET_INFO))
        return cast(Context, SimpleNamespace(replica=replica, settings=Settings(data_dir=tmp_path / name)))

    host = "8080--demo--alice.apps.example.com"
    value = ports.credentials(replica_ctx("one")).cookie(user_id="usr_bob", host=host, now=100, ttl=60)
    assert ports.credentials(replica_ctx("two")).open_cookie(value, host=host, now=110).user_id == "usr_bob"
    assert not (tmp_path / "one").exists()  # nothing on disk
    single = cast(Context, SimpleNamespace(replica=None, settings=Settings(data_dir=tmp_path / "single")))
    with pytest.raises(CredentialRejected):  # a single broker's own key, in its data dir
        ports.credentials(single).open_cookie(value, host=host, now=110)


# -- the registry: forgetting replicas gone long, and being forgotten while alive -------------------


def test_a_beat_forgets_replicas_gone_long_and_a_replica_forgotten_alive_records_its_channels_again(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        store = SqliteStore(tmp_path / "broker.db")
        clock = [1_000]
        hub = Hub()
        ctx = cast(Context, SimpleNamespace(store=store, hub=hub, now=lambda: clock[0]))
        me = Replica("rep_me", "http://a:8000", "secret", 1_000)
        try:
            await store.beat_replica(me.record(1_000))  # as peering.start registers it
            await store.beat_replica(ReplicaRecord("rep_dead", "http://b:8000", 900, 1_000))
            await store.hold_agent_channel("sp_2", "rep_dead", 1_000)
            agent = AgentLink("sp_1", cast(Link, None), "digest", listening=(8080,))
            hub.attach(agent)
            await store.hold_agent_channel("sp_1", "rep_me", 1_000)

            clock[0] += replicas.LIVE_FOR + 1  # rep_dead is gone, not yet forgotten
            assert await peering.beat(ctx, me, {"rep_me", "rep_dead"}) == {"rep_me"}
            assert await store.forget_replicas(0) == []
            clock[0] += replicas.FORGET_AFTER
            await peering.beat(ctx, me, {"rep_me"})
            assert [r.id for r in await store.live_replicas(0)] == ["rep_me"]  # rep_dead forgotten
            assert await store.agent_channel("sp_2") is None

            # Another replica forgot this one while it stalled: its next beat records its channels again.
            assert await store.forget_replicas(clock[0] + 1) == ["rep_me"]
            assert await store.agent_channel("sp_1") is None
            clock[0] += 1
            await peering.beat(ctx, me, {"rep_me"})
            held = await store.agent_channel("sp_1")
            assert held is not None and held.replica.id == "rep_me" and held.listening == "[8080]"
        finally:
            await store.close()

    asyncio.run(scenario())
