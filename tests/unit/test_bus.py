"""The bus contract (broker.bus), held by MemoryBus (one process) and PostgresBus (LISTEN/NOTIFY,
replicas on a real PostgreSQL server the tests start): per-subscription order, channels kept
apart, nothing for those who left, a failing listener contained, payloads within NOTIFY's
limits, and — what only the PostgreSQL one can show — two bus instances (two processes) hearing
each other, and listening again after its connection is lost."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker import bus as bus_module
from broker.bus import (
    MAX_CHANNEL,
    MAX_PAYLOAD,
    Bus,
    InvalidChannel,
    MemoryBus,
    PayloadNotText,
    PayloadTooLarge,
    check_channel,
)

T = TypeVar("T")

BACKENDS = ["memory", "postgresql"]

# Two buses: for MemoryBus the same one (one process); for PostgreSQL two instances, as two
# replicas have.
Buses = Callable[[], AbstractAsyncContextManager[tuple[Bus, Bus]]]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 20))


@pytest.fixture(params=BACKENDS)
def buses(request: pytest.FixtureRequest) -> Iterator[Buses]:
    if request.param == "memory":

        @asynccontextmanager
        async def memory() -> AsyncIterator[tuple[Bus, Bus]]:
            bus = MemoryBus()
            try:
                yield bus, bus
            finally:
                await bus.close()

        yield memory
        return
    server = request.getfixturevalue("postgres")
    url = server.create_database(migrated=False)

    @asynccontextmanager
    async def postgresql() -> AsyncIterator[tuple[Bus, Bus]]:
        from broker.postgres_bus import PostgresBus

        one, two = await PostgresBus.open(url), await PostgresBus.open(url)
        try:
            yield one, two
        finally:
            await one.close()
            await two.close()

    yield postgresql
    server.drop_database(url)


class Inbox:
    """A listener that keeps what it got, and lets a test wait for the n-th message."""

    def __init__(self) -> None:
        self.got: list[bytes] = []
        self._more = asyncio.Condition()

    async def __call__(self, payload: bytes) -> None:
        async with self._more:
            self.got.append(payload)
            self._more.notify_all()

    async def wait(self, count: int) -> list[bytes]:
        async with self._more:
            await self._more.wait_for(lambda: len(self.got) >= count)
        return self.got


def test_each_subscriber_of_a_channel_gets_its_messages_in_order_and_no_others(buses: Buses) -> None:
    async def scenario() -> None:
        async with buses() as (bus, peer):
            first, second, elsewhere = Inbox(), Inbox(), Inbox()
            await bus.subscribe("a", first)
            await peer.subscribe("a", second)
            await bus.subscribe("b", elsewhere)
            sent = [str(n).encode() for n in range(50)]
            for payload in sent:
                await bus.publish("a", payload)
            await peer.publish("b", b"for b")
            assert await first.wait(50) == sent
            assert await second.wait(50) == sent
            assert await elsewhere.wait(1) == [b"for b"]

    run(scenario())


def test_two_buses_hear_each_other(buses: Buses) -> None:
    """What one replica publishes, another's subscribers hear, and its own."""

    async def scenario() -> None:
        async with buses() as (bus, peer):
            here, there = Inbox(), Inbox()
            await bus.subscribe("pair_streams", here)
            await peer.subscribe("pair_streams", there)
            await peer.publish("pair_streams", b'{"type":"end"}')
            await bus.publish("pair_streams", "ünïcode".encode())
            assert await here.wait(2) == [b'{"type":"end"}', "ünïcode".encode()]
            assert await there.wait(2) == [b'{"type":"end"}', "ünïcode".encode()]

    run(scenario())


def test_publishing_does_not_wait_for_listeners(buses: Buses) -> None:
    async def scenario() -> None:
        async with buses() as (bus, _peer):
            release = asyncio.Event()
            heard = Inbox()

            async def slow(payload: bytes) -> None:
                await release.wait()
                await heard(payload)

            await bus.subscribe("a", slow)
            await bus.publish("a", b"one")
            await bus.publish("a", b"two")  # returns although the first is still being handled
            assert heard.got == []
            release.set()
            assert await heard.wait(2) == [b"one", b"two"]

    run(scenario())


def test_after_unsubscribing_nothing_more_arrives_and_the_channel_is_forgotten(buses: Buses) -> None:
    async def scenario() -> None:
        async with buses() as (bus, peer):
            inbox, witness = Inbox(), Inbox()
            unsubscribe = await bus.subscribe("a", inbox)
            await bus.subscribe("w", witness)
            await peer.publish("a", b"before")
            await inbox.wait(1)
            await unsubscribe()
            assert bus.subscribers("a") == 0  # type: ignore[attr-defined]
            await peer.publish("a", b"after")
            await peer.publish("w", b"after")  # published after "a"'s: once it is here, "a"'s would be
            await witness.wait(1)
            late = Inbox()
            await bus.subscribe("a", late)  # nothing is kept for subscribers that come later
            await peer.publish("a", b"later")
            assert await late.wait(1) == [b"later"]
            assert inbox.got == [b"before"]

    run(scenario())


def test_a_failing_listener_is_logged_once_a_minute_and_hears_the_next_message(
    buses: Buses, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A flood of malformed messages (a hand-made NOTIFY, another release's replica) logged a
    # traceback per message on every replica.
    async def scenario() -> None:
        async with buses() as (bus, peer):
            inbox = Inbox()

            async def picky(payload: bytes) -> None:
                if payload.startswith(b"bad"):
                    raise ValueError("cannot take this one")
                await inbox(payload)

            await bus.subscribe("a", picky)
            for i in range(3):
                await peer.publish("a", b"bad %d" % i)
            await peer.publish("a", b"good")
            assert await inbox.wait(1) == [b"good"]
            monkeypatch.setattr(bus_module, "FAILURE_LOG_SECONDS", 0.0)  # the minute is over
            await peer.publish("a", b"bad again")
            await peer.publish("a", b"good again")
            assert await inbox.wait(2) == [b"good", b"good again"]

    with caplog.at_level(logging.ERROR, logger="pair.broker.bus"):
        run(scenario())
    first, second = caplog.records
    assert first.getMessage() == "a listener on a failed"
    assert first.exc_info is not None and "cannot take this one" in str(first.exc_info[1])
    assert second.getMessage() == "a listener on a failed (and 2 more since the last such line)"


def test_payloads_are_held_to_notifys_limits(buses: Buses) -> None:
    async def scenario() -> None:
        async with buses() as (bus, peer):
            inbox = Inbox()
            await peer.subscribe("a", inbox)
            await bus.publish("a", b"x" * MAX_PAYLOAD)
            with pytest.raises(PayloadTooLarge):
                await bus.publish("a", b"x" * (MAX_PAYLOAD + 1))
            with pytest.raises(PayloadNotText):
                await bus.publish("a", b"\xff")
            with pytest.raises(PayloadNotText):
                await bus.publish("a", b"nul \x00")
            assert [len(p) for p in await inbox.wait(1)] == [MAX_PAYLOAD]

    run(scenario())
    assert MAX_PAYLOAD < 8000  # PostgreSQL: "the payload string must be shorter than 8000 bytes"


def test_postgres_bus_listens_again_after_losing_its_connection(
    postgres: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The server ends the listening backend (as a restart does): the bus says so, connects
    again, LISTENs to its channels, tells its `on_gap` listeners (messages may have been lost
    meanwhile) and delivers what is published afterwards."""
    from broker.postgres_bus import PostgresBus

    url = postgres.create_database(migrated=False)

    async def scenario() -> None:
        bus, peer = await PostgresBus.open(url), await PostgresBus.open(url)
        try:
            inbox = Inbox()
            gap = asyncio.Event()

            async def heard_of_a_gap() -> None:
                gap.set()

            bus.on_gap(heard_of_a_gap)
            await bus.subscribe("pair_agent_sp_aaaaaaaaaaaa", inbox)
            await peer.publish("pair_agent_sp_aaaaaaaaaaaa", b"before")
            await inbox.wait(1)
            postgres.execute(
                url,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query LIKE 'LISTEN%'",
            )
            await gap.wait()  # the reader notices at once (the socket closes) and listens again
            assert bus.reconnects == 1
            await peer.publish("pair_agent_sp_aaaaaaaaaaaa", b"after")
            assert await inbox.wait(2) == [b"before", b"after"]
        finally:
            await bus.close()
            await peer.close()

    with caplog.at_level(logging.WARNING, logger="pair.broker.bus"):
        run(scenario())
    postgres.drop_database(url)
    said = [r.getMessage() for r in caplog.records]
    assert any(s.startswith("the bus lost its PostgreSQL connection") for s in said), said
    assert "the bus listens on PostgreSQL again (4 channels)" in said  # what it LISTENs to, not its subscribers
    assert not any("\n" in s for s in said), said  # libpq's several lines, cut to one


def test_postgres_bus_keeps_what_it_cannot_send_and_sends_it_in_order(
    postgres: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The publisher's connections die and no new one is let in (as while PostgreSQL restarts):
    a publish does not fail (what it announces was committed already), its messages wait, and go
    out in order once the database answers again."""
    from psycopg import conninfo

    from broker.postgres_bus import PostgresBus

    url = postgres.create_database(migrated=False)
    name = conninfo.conninfo_to_dict(url)["dbname"]
    channel = "pair_agent_sp_aaaaaaaaaaaa"

    async def scenario() -> None:
        listener, publisher = await PostgresBus.open(url), await PostgresBus.open(url)
        try:
            inbox = Inbox()
            await listener.subscribe(channel, inbox)
            await publisher.publish(channel, b"one")
            await inbox.wait(1)
            postgres.execute(postgres.admin_url, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            postgres.execute(
                postgres.admin_url,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                f" WHERE datname = '{name}' AND query NOT LIKE 'LISTEN%'",
            )
            await publisher.publish(channel, b"two")
            await publisher.publish(channel, b"three")
            assert publisher.waiting == 2
            postgres.execute(postgres.admin_url, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            assert await inbox.wait(3) == [b"one", b"two", b"three"]
            while publisher.waiting:  # the last one is delivered before its sender hears it went out
                await asyncio.sleep(0.01)
        finally:
            await listener.close()
            await publisher.close()

    with caplog.at_level(logging.WARNING, logger="pair.broker.bus"):
        run(scenario())
    postgres.drop_database(url)
    said = [r.getMessage() for r in caplog.records]
    assert any(s.startswith("the bus cannot send messages to the other replicas") for s in said), said
    assert "the bus sends to the other replicas again; every waiting message went out" in said


def test_channel_names_are_held_to_their_rules(buses: Buses) -> None:
    """Both buses refuse what PostgresBus could not carry: an empty name, one past MAX_CHANNEL
    bytes, one with a line feed (which would end the name inside a carried payload) or a NUL."""

    async def scenario() -> None:
        async with buses() as (bus, _peer):
            for bad in ("", "x" * (MAX_CHANNEL + 1), "é" * 32, "a\nb", "a\x00b"):
                with pytest.raises(InvalidChannel):
                    await bus.publish(bad, b"x")
                with pytest.raises(InvalidChannel):
                    await bus.subscribe(bad, Inbox())
            inbox = Inbox()
            longest = "x" * MAX_CHANNEL
            await bus.subscribe(longest, inbox)
            await bus.publish(longest, b"y" * MAX_PAYLOAD)  # the largest message there is still goes
            assert [len(p) for p in await inbox.wait(1)] == [MAX_PAYLOAD]

    run(scenario())


channels = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1).filter(
    lambda c: len(c.encode()) <= MAX_CHANNEL and c.isprintable()
)


@given(channel=channels, text=st.text(st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"])))
def test_postgres_bus_carries_any_channel_and_payload_within_notifys_limit(channel: str, text: str) -> None:
    """The one place that decides what NOTIFY carries (postgres_bus.notifications) and how it is
    read back (postgres_bus.received): every channel and payload within the bus's rules comes
    back as it was sent, from every notification that carries it to a listener of this release,
    and each fits NOTIFY's payload (shorter than 8000 bytes) even at the largest payload."""
    from broker.postgres_bus import CARRIERS, notifications, received

    check_channel(channel)
    largest = text.encode()[:MAX_PAYLOAD].decode(errors="ignore")
    for payload in (text, largest, largest + "x" * (MAX_PAYLOAD - len(largest.encode()))):
        if len(payload.encode()) > MAX_PAYLOAD:
            continue
        sent = notifications(channel, payload)
        heard = [received(carrier, wire) for carrier, wire in sent if carrier in CARRIERS]
        assert heard == [(channel, payload)]
        assert all(len(wire.encode()) < 8000 and len(carrier.encode()) <= MAX_CHANNEL for carrier, wire in sent)


def test_postgres_bus_subscribes_without_a_statement(postgres: Any) -> None:
    """10,000 agent channels subscribed on one bus (one replica's 10,000 agents) run no
    statement on any of its connections (PostgreSQL's own pg_stat_activity says when each
    backend last started one) and open none; a message to the last of them still arrives, and
    unsubscribing them all runs none either."""
    from broker.postgres_bus import PostgresBus

    url = postgres.create_database(migrated=False)
    name = url.rsplit("/", 1)[1]
    activity = (
        "SELECT pid, query_start, query FROM pg_stat_activity"
        f" WHERE datname = '{name}' AND query NOT LIKE '%pg_stat_activity%' ORDER BY pid"  # not this look, nor the last
    )

    async def scenario() -> None:
        bus, peer = await PostgresBus.open(url), await PostgresBus.open(url)
        try:
            await bus.publish("pair_warm", b"")  # the publishing connection has run its statement
            before = postgres.rows(url, activity)
            assert len(before) == 4  # two buses, each one listening and one publishing connection
            statements = bus.statements
            inbox = Inbox()
            unsubscribes = [
                await bus.subscribe(f"pair_agent_sp_{n:012d}", inbox if n == 9999 else Inbox()) for n in range(10_000)
            ]
            assert postgres.rows(url, activity) == before
            assert bus.statements == statements
            await peer.publish("pair_agent_sp_000000009999", b"to the last one")
            assert await inbox.wait(1) == [b"to the last one"]
            after_publish = postgres.rows(url, activity)
            for unsubscribe in unsubscribes:
                await unsubscribe()
            assert postgres.rows(url, activity) == after_publish
            assert bus.statements == statements
        finally:
            await bus.close()
            await peer.close()

    run(scenario())
    postgres.drop_database(url)


def test_postgres_bus_a_message_the_database_refuses_fails_its_publish_only(postgres: Any) -> None:
    """A message PostgreSQL refuses rather than cannot take (text its database's encoding has no
    character for) is raised to its publisher, as a statement of its own would be, and the bus
    goes on sending: the sender does not die with it, leaving later publishers waiting forever."""
    import psycopg

    from broker.postgres_bus import PostgresBus

    name = "bus_latin1"
    postgres.execute(
        postgres.admin_url,
        f"CREATE DATABASE {name} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0",
    )
    url = postgres.url(name)

    async def scenario() -> None:
        bus = await PostgresBus.open(url)
        try:
            inbox = Inbox()
            await bus.subscribe("pair_streams", inbox)
            with pytest.raises((psycopg.DataError, UnicodeEncodeError)):  # by the server, or by psycopg for it
                await bus.publish("pair_streams", "€".encode())
            await bus.publish("pair_streams", b"after")
            assert await inbox.wait(1) == [b"after"]
            assert bus.waiting == 0
        finally:
            await bus.close()

    try:
        run(scenario())
    finally:
        postgres.drop_database(url)
