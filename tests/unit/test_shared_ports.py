"""Shared ports' decisions, each in its one place: who may open a port at each level
(access.may_open_port), the owner's verbs and their refusals (broker.ports), addresses made
unique (handles per user, hashed Space labels on a clash), narrowing a level ending the app's
streams, the listening ports the agent reports (pair.container.listening), the forward specs
(pair.cli.forwarding) and the apps-domain setting."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker import access, accounts, bus, events, ports, spaces
from broker.errors import Problem
from broker.settings import Settings, SettingsError
from pair.api import models as m
from pair.api.errors import PairError
from pair.cli.forwarding import Spec, parse_spec, split_args
from pair.container import listening
from tests.support.broker import InProcessBroker, in_process_broker

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 10))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[InProcessBroker]:
    with in_process_broker(tmp_path / "data", apps_domain="*.apps.example.com") as b:
        yield b


def users(broker: InProcessBroker, *emails: str) -> list[Any]:
    return [broker.run(accounts.create_user(broker.ctx, e))[0] for e in emails]


def space(broker: InProcessBroker, owner: Any, name: str, *share: str) -> str:
    token = broker.run(spaces.authorize(broker.ctx, owner, m.AuthorizeRequest(name=name, share_with=list(share))))
    return token.space.id


# -- levels -----------------------------------------------------------------------------------


def test_who_may_open_a_port_at_each_level(broker: InProcessBroker) -> None:
    alice, bob, carol = users(broker, "alice@example.com", "bob@example.com", "carol@example.com")
    sid = space(broker, alice, "demo", bob.email)
    record = broker.run(broker.ctx.store.space(sid))
    assert record is not None

    def may(user: Any, level: str) -> bool:
        return broker.run(access.may_open_port(broker.ctx, user, record, level))

    table = {
        "owner": (True, False, False, False),
        "shared": (True, True, False, False),
        "authenticated": (True, True, True, False),
        "public": (True, True, True, True),
    }
    for level, expected in table.items():
        assert (may(alice, level), may(bob, level), may(carol, level), may(None, level)) == expected, level


# -- the owner's verbs --------------------------------------------------------------------------


def test_share_list_unshare_and_their_refusals(broker: InProcessBroker) -> None:
    alice, bob = users(broker, "Jane.Doe+pair@example.com", "bob@example.com")
    sid = space(broker, alice, "dynamic_stark", bob.email)
    ctx = broker.ctx

    shared = broker.run(ports.share(ctx, alice, sid, "8080", m.PortShare()))
    assert (shared.level, shared.label) == ("owner", "")  # a new share is the owner's only
    assert shared.url == "http://8080--dynamic-stark--jane-doe-pair.apps.example.com/"  # the broker's scheme
    changed = broker.run(ports.share(ctx, alice, sid, "8080", m.PortShare(level="shared", label="Docs")))
    assert (changed.level, changed.label, changed.url) == ("shared", "Docs", shared.url)
    kept = broker.run(ports.share(ctx, alice, sid, "8080", m.PortShare(level="public")))
    assert kept.label == "Docs"

    broker.run(ports.share(ctx, alice, sid, "3000", m.PortShare()))
    mine = broker.run(ports.listing(ctx, alice, sid))
    assert [p.port for p in mine.shared] == [3000, 8080]
    theirs = broker.run(ports.listing(ctx, bob, sid))
    assert [p.port for p in theirs.shared] == [8080]  # 3000 is the owner's only
    assert theirs.listening == []

    with pytest.raises(Problem) as refused:
        broker.run(ports.share(ctx, bob, sid, "8080", m.PortShare(level="public")))
    assert (refused.value.status, refused.value.code) == (403, "not_owner")
    for bad in ("0", "65536", "80a", "", "-1"):
        with pytest.raises(Problem) as invalid:
            broker.run(ports.share(ctx, alice, sid, bad, m.PortShare()))
        assert invalid.value.status == 422
    with pytest.raises(Problem) as label:
        broker.run(ports.share(ctx, alice, sid, "8080", m.PortShare(label="two\nlines")))
    assert label.value.status == 422

    broker.run(ports.unshare(ctx, alice, sid, "3000"))
    with pytest.raises(Problem) as again:
        broker.run(ports.unshare(ctx, alice, sid, "3000"))
    assert again.value.status == 404 and "is not shared" in again.value.message


def test_addresses_stay_unique(broker: InProcessBroker) -> None:
    jane1, jane2 = users(broker, "jane@one.example", "jane@two.example")
    ctx = broker.ctx
    a = broker.run(ports.share(ctx, jane1, space(broker, jane1, "a_b"), "80", m.PortShare()))
    b = broker.run(ports.share(ctx, jane1, space(broker, jane1, "a-b"), "80", m.PortShare()))
    c = broker.run(ports.share(ctx, jane2, space(broker, jane2, "a-b"), "80", m.PortShare()))
    hosts = [u.url.split("://")[1].split(".")[0] for u in (a, b, c)]
    assert hosts[0] == "80--a-b--jane"
    assert hosts[1].startswith("80--a-b-") and hosts[1].endswith("--jane")  # hashed: a_b had the readable one
    assert hosts[2] == "80--a-b--jane-2"  # another user called jane


def test_deleting_a_space_frees_its_addresses(broker: InProcessBroker) -> None:
    (alice,) = users(broker, "alice@example.com")
    sid = space(broker, alice, "demo")
    first = broker.run(ports.share(broker.ctx, alice, sid, "8080", m.PortShare()))
    broker.run(spaces.delete(broker.ctx, alice, sid))
    again = broker.run(ports.share(broker.ctx, alice, space(broker, alice, "demo"), "8080", m.PortShare()))
    assert again.url == first.url


def test_without_an_apps_domain_sharing_is_off(tmp_path: Path) -> None:
    with in_process_broker(tmp_path / "data") as broker:
        (alice,) = users(broker, "alice@example.com")
        sid = space(broker, alice, "demo")
        listing = broker.run(ports.listing(broker.ctx, alice, sid))
        assert not listing.enabled and listing.reason.startswith("Port sharing is off on this broker")
        assert "Ask its operator" in listing.reason and "pair-broker" not in listing.reason
        # An admin's listing says what an admin does (reproduction: admins were told to ask the operator).
        root, _ = broker.run(accounts.create_user(broker.ctx, "root@example.com", is_admin=True))
        mine = space(broker, root, "own")
        admins = broker.run(ports.listing(broker.ctx, root, mine)).reason
        assert admins.startswith("Port sharing is off on this broker") and "Ask its operator" not in admins
        assert "`pair-broker serve --apps-domain" in admins
        with pytest.raises(Problem) as off:
            broker.run(ports.share(broker.ctx, alice, sid, "8080", m.PortShare()))
        assert (off.value.status, off.value.code) == (409, "ports_off")
        assert "--apps-domain" in off.value.detail_for(True)  # the operator's command, for admins
        assert off.value.detail_for(False).startswith("Ask its operator")


def test_narrowing_a_level_or_unsharing_ends_the_apps_streams(broker: InProcessBroker) -> None:
    (alice,) = users(broker, "alice@example.com")
    sid = space(broker, alice, "demo")
    ctx = broker.ctx
    heard: list[events.EndStreams] = []

    async def scenario() -> None:
        async def listen(payload: bytes) -> None:
            event = events.stream_events.decode(payload)
            if isinstance(event, events.EndStreams):
                heard.append(event)

        unsubscribe = await ctx.bus.subscribe(bus.STREAMS, listen)
        try:
            shared = await ports.share(ctx, alice, sid, "8080", m.PortShare(level="public"))
            await ports.share(ctx, alice, sid, "8080", m.PortShare(level="public", label="same level"))
            await ports.share(ctx, alice, sid, "8080", m.PortShare(level="authenticated"))  # narrower
            await ports.share(ctx, alice, sid, "8080", m.PortShare(level="public"))  # wider: nothing ends
            await ports.unshare(ctx, alice, sid, "8080")
            await asyncio.sleep(0)  # the memory bus delivers on the loop
            address = shared.url.split("://")[1].split(".")[0]
            assert [(e.apps, e.kinds) for e in heard] == [([address], ["port"]), ([address], ["port"])]
            assert "changed who can open port 8080" in heard[0].reason
            assert "stopped sharing port 8080" in heard[1].reason
        finally:
            await unsubscribe()

    run(scenario())


# -- the agent's listening ports --------------------------------------------------------------

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"


def v4(address: str, port: int, state: str = "0A") -> str:
    host = int.from_bytes(socket.inet_aton(address), sys.byteorder)  # the kernel prints the word in host order
    return f"   0: {host:08X}:{port:04X} 00000000:0000 {state} 00000000:00000000 00:00000000 00000000 0 0 1"


def v6(address: str, port: int, state: str = "0A") -> str:
    raw = socket.inet_pton(socket.AF_INET6, address)
    words = "".join(f"{int.from_bytes(raw[i : i + 4], sys.byteorder):08X}" for i in range(0, 16, 4))
    return f"   0: {words}:{port:04X} 00000000000000000000000000000000:0000 {state} 0 0 0 0 0 0 0 0 1"


def test_listening_sockets_on_loopback_or_any_address_are_candidates() -> None:
    lines = [
        v4("0.0.0.0", 3000),  # noqa: S104 - a /proc line, not a bind
        v4("127.0.0.1", 8080),
        v4("10.1.2.3", 9000),  # another address: 127.0.0.1 does not reach it
        v4("127.0.0.1", 5432, state="01"),  # established, not listening
        v6("::", 5173),
        v6("::1", 6006),
        v6("::ffff:127.0.0.1", 4000),
        v6("fe80::1", 7000),
        "garbage line",
    ]
    assert listening.parse(lines) == {3000, 8080, 5173, 6006, 4000}


def test_the_agent_sees_a_real_listening_socket(tmp_path: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert port in listening.listening()
        assert port not in listening.listening(exclude={port})
    assert listening.listening(tables=[tmp_path / "missing"]) == []


# -- forward specs ------------------------------------------------------------------------------


@given(st.text(max_size=12))
def test_a_forward_spec_is_local_or_local_colon_remote(text: str) -> None:
    spec = parse_spec(text)
    parts = text.split(":")
    well_formed = 1 <= len(parts) <= 2 and all(p.isascii() and p.isdigit() and len(p) <= 5 for p in parts)
    in_range = well_formed and all(1 <= int(p) <= 65535 for p in parts)
    assert (spec is not None) == in_range
    if spec is not None:
        assert (spec.local, spec.remote) == (int(parts[0]), int(parts[-1]))


def test_forward_arguments() -> None:
    assert split_args(["demo", "18080:8080", "3000"]) == ("demo", [Spec(18080, 8080), Spec(3000, 3000)])
    assert split_args(["8080"]) == (None, [Spec(8080, 8080)])
    for bad in (["demo"], ["demo", "x"], ["demo", "8080", "8080:9090"], ["demo", "70000"]):
        with pytest.raises(PairError):
            split_args(bad)


# -- the setting --------------------------------------------------------------------------------


def test_the_apps_domain_setting() -> None:
    assert Settings.load(apps_domain="*.Apps.Example.com").apps_domain == "*.apps.example.com"
    assert Settings.load(apps_domain="*.localhost:8000").apps_domain == "*.localhost:8000"
    assert Settings.load().apps_domain == ""
    for bad in ("apps.example.com", "*.", "*.example.com:0", "*.1.2.3.4", "*.exa mple.com"):
        with pytest.raises(SettingsError, match="--apps-domain"):
            Settings.load(apps_domain=bad)
    # the broker's own host under its apps domain would be taken for an app's
    with pytest.raises(SettingsError, match=r"covers the broker's own host pair\.example\.com"):
        Settings.load(apps_domain="*.example.com", public_url="https://pair.example.com")
    beside = Settings.load(apps_domain="*.apps.pair.example.com", public_url="https://pair.example.com")
    assert beside.apps_domain == "*.apps.pair.example.com"
