"""The stream primitive's decisions, each in its one place: the agent's TCP allow-list, ending
streams of every kind (broker.events.end_streams → broker.streams.on_event), the bus messages
that carry it within NOTIFY's limit, and how the broker asks an agent for a stream in the words
that agent knows (an agent of the release before streams gets `tunnel` for SSH, nothing else),
and asking again when the agent reconnects while a stream waits for it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from types import SimpleNamespace
from typing import Any, TypeVar, cast

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker import bus, events, relay, streams
from broker.context import Context
from broker.errors import Problem
from broker.hub import AgentLink, Hub, Stream
from broker.links import Closed, Frame
from broker.replicas import Replica
from broker.settings import Settings
from broker.store import AgentChannelRecord, ReplicaRecord, SpaceRecord, StreamRecord, UserRecord
from pair.api import models as m
from pair.api import terminal as tp
from pair.api.closecodes import CREDENTIAL_ENDED, CloseCode, for_status
from pair.container.streams import MAX_PORT, tcp_refusal

T = TypeVar("T")
SSHD = 2222


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 10))


# -- the agent's allow-list -----------------------------------------------------------------


@given(st.integers(min_value=-(2**20), max_value=2**20), st.booleans())
def test_the_agent_dials_only_real_ports_and_pairs_own_only_when_shared(port: int, shared: bool) -> None:
    refusal = tcp_refusal(port, shared=shared, reserved={SSHD})
    allowed = 1 <= port <= MAX_PORT and (port != SSHD or shared)
    assert (refusal is None) == allowed
    if refusal is not None:
        assert refusal.endswith(".") and str(port) in refusal


def test_the_allow_list_says_why() -> None:
    assert tcp_refusal(SSHD, shared=False, reserved={SSHD}) == (
        "Port 2222 is pair's own in the container; only its owner can share it, on purpose."
    )
    assert tcp_refusal(0, shared=True, reserved=set()) == "0 is not a TCP port (ports are 1 to 65535)."
    assert tcp_refusal(65536, shared=True, reserved=set()) == "65536 is not a TCP port (ports are 1 to 65535)."
    assert tcp_refusal(8080, shared=False, reserved={SSHD}) is None


# -- fakes: links that record, a context with only a hub and a bus --------------------------


class FakeLink:
    def __init__(self) -> None:
        self.sent: list[Frame] = []
        self.closed: Closed | None = None
        self.closed_event = asyncio.Event()

    async def send_text(self, text: str) -> None:
        self.sent.append(text)

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append(data)

    async def receive(self) -> Frame | Closed:
        await self.closed_event.wait()
        assert self.closed is not None
        return self.closed

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        if self.closed is None:
            self.closed = Closed(code, reason)
            self.closed_event.set()


def context() -> Context:
    return cast(Context, SimpleNamespace(hub=Hub(), bus=bus.MemoryBus(), snapshots={}))


class Collector:
    """A bus listener that keeps what arrives on its channel; `settled()` returns it once every
    message published before the call has arrived (a fence: delivery is ordered per subscription)."""

    FENCE = b"fence"

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.got: list[bytes] = []
        self._fences = 0
        self._more = asyncio.Condition()

    async def __call__(self, payload: bytes) -> None:
        async with self._more:
            if payload == self.FENCE:
                self._fences += 1
            else:
                self.got.append(payload)
            self._more.notify_all()

    async def settled(self, ctx: Context) -> list[bytes]:
        wanted = self._fences + 1
        await ctx.bus.publish(self.channel, self.FENCE)
        async with self._more:
            await self._more.wait_for(lambda: self._fences >= wanted)
        return self.got


BOB = UserRecord("usr_bob", "bob@example.com", False, 0)
ALICE = UserRecord("usr_alice", "alice@example.com", False, 0)


def add_stream(ctx: Context, stream_id: str, space_id: str, user: UserRecord, kind: m.StreamKind) -> FakeLink:
    stream = Stream(stream_id, space_id, user.id, user.email, kind)
    client, agent = FakeLink(), FakeLink()
    stream.client = client
    stream.agent.set_result(agent)
    ctx.hub.streams[stream.id] = stream
    return client


async def listening(ctx: Context, space_id: str) -> Collector:
    """Subscribe the streams' listener, as the app does, and collect the agent's commands."""
    await ctx.bus.subscribe(bus.STREAMS, lambda payload: streams.on_event(ctx, payload))
    commands = Collector(bus.agent_channel(space_id))
    await ctx.bus.subscribe(commands.channel, commands)
    return commands


def test_end_streams_ends_a_persons_streams_of_every_kind_and_their_terminals() -> None:
    async def scenario() -> None:
        ctx = context()
        commands = await listening(ctx, "sp_demo")
        kinds: tuple[m.StreamKind, ...] = ("ssh", "terminal", "port")
        bobs = [add_stream(ctx, f"s{n}", "sp_demo", BOB, kind) for n, kind in enumerate(kinds)]
        alices = add_stream(ctx, "a1", "sp_demo", ALICE, "terminal")
        elsewhere = add_stream(ctx, "e1", "sp_other", BOB, "ssh")

        await events.end_streams(ctx, "sp_demo", "alice@example.com stopped sharing.", people=[BOB])
        for link in bobs:
            await asyncio.wait_for(link.closed_event.wait(), 5)
            assert link.closed == Closed(CloseCode.REVOKED, "alice@example.com stopped sharing.")
        assert alices.closed is None and elsewhere.closed is None
        [command] = [events.agent_commands.decode(c) for c in await commands.settled(ctx)]
        assert command == events.EndTerminals(["bob@example.com"], "alice@example.com stopped sharing.")

    run(scenario())


class KickStore:
    """alice owns sp_demo ("demo"), shared with bob; the audit rows are kept."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str]] = []

    async def space(self, space_id: str) -> Any:
        return SimpleNamespace(id=space_id, name="demo", owner_id=ALICE.id, owner_email=ALICE.email, deleted_at=None)

    async def is_shared_with(self, space_id: str, user_id: str) -> bool:
        return user_id == BOB.id

    async def user_by_email(self, email: str) -> UserRecord | None:
        return {BOB.email: BOB, ALICE.email: ALICE}.get(email)

    async def open_streams(self, space_id: str) -> list[Any]:
        return []

    async def audit(self, now: int, actor: str, action: str, target: str, detail: str = "") -> None:
        self.rows.append((actor, action))


def test_a_kick_tells_the_agent_the_persons_access_goes_on() -> None:
    """Repro: the others in a terminal a kicked person started were told that person's access
    to the Space ended; the agent could not tell a kick from an unshare."""

    async def scenario() -> None:
        ctx = cast(Context, SimpleNamespace(hub=Hub(), bus=bus.MemoryBus(), store=KickStore(), now=lambda: 1))
        commands = await listening(ctx, "sp_demo")
        await streams.kick(ctx, ALICE, "sp_demo", BOB.email)
        await events.end_streams(ctx, "sp_demo", "unshared", people=[BOB])
        assert [events.agent_commands.decode(c) for c in await commands.settled(ctx)] == [
            events.EndTerminals([BOB.email], 'alice@example.com ended your session in "demo".', kicked=True),
            events.EndTerminals([BOB.email], "unshared", kicked=False),
        ]

    run(scenario())


def test_end_streams_of_some_kinds_leaves_the_others_and_none_means_everyone() -> None:
    async def scenario() -> None:
        ctx = context()
        commands = await listening(ctx, "sp_demo")
        ssh = add_stream(ctx, "s1", "sp_demo", BOB, "ssh")
        port = add_stream(ctx, "s2", "sp_demo", ALICE, "port")
        await events.end_streams(ctx, "sp_demo", "ports closed", kinds={"port"})
        await asyncio.wait_for(port.closed_event.wait(), 5)
        assert not ssh.closed_event.is_set()
        await events.end_streams(ctx, "sp_demo", 'The Space "demo" was deleted.', code=CloseCode.REVOKED)
        await asyncio.wait_for(ssh.closed_event.wait(), 5)
        assert ssh.closed == Closed(CloseCode.REVOKED, 'The Space "demo" was deleted.')
        # only the second named terminals (every kind), and for everyone
        assert [events.agent_commands.decode(c) for c in await commands.settled(ctx)] == [
            events.EndTerminals(None, 'The Space "demo" was deleted.')
        ]

    run(scenario())


@given(st.lists(st.text(alphabet="abcdefghij.é", min_size=1, max_size=240), min_size=0, max_size=120))
def test_ending_many_peoples_streams_fits_notify_and_names_each_once(locals_: list[str]) -> None:
    people = [UserRecord(f"usr_{n:012d}", f"{local}{n}@example.com", False, 0) for n, local in enumerate(locals_)]
    published: list[tuple[str, bytes]] = []

    class Recorder(bus.MemoryBus):
        async def publish(self, channel: str, payload: bytes) -> None:
            await super().publish(channel, payload)  # refuses anything over the limit
            published.append((channel, payload))

    ctx = cast(Context, SimpleNamespace(hub=Hub(), bus=Recorder()))
    run(events.end_streams(ctx, "sp_demo", "x" * 300, people=people))
    ends = [events.stream_events.decode(p) for c, p in published if c == bus.STREAMS]
    terminals = [events.agent_commands.decode(p) for c, p in published if c == bus.agent_channel("sp_demo")]
    assert [i for e in ends for i in cast(events.EndStreams, e).user_ids or []] == [p.id for p in people]
    assert [e for t in terminals for e in cast(events.EndTerminals, t).emails or []] == [p.email for p in people]
    assert all(len(p) <= bus.MAX_PAYLOAD for _, p in published)


# -- asking an agent for a stream in its own words ------------------------------------------


OLD_AGENT_MESSAGES = msgspec.json.Decoder(m.ReplyMessage | m.TunnelRequest)  # what the last release decodes


async def ask(streams_known: frozenset[str], target: m.StreamTarget) -> tuple[FakeLink, list[bytes]]:
    ctx = context()
    refusals = Collector(bus.STREAMS)
    await ctx.bus.subscribe(bus.STREAMS, refusals)
    control = FakeLink()
    link = AgentLink("sp_demo", control, "digest", streams=streams_known)
    link.introduced.set()
    ctx.hub.attach(link)
    await relay._command(ctx, link, msgspec.json.encode(events.OpenStream("tun_abcdefghijkl", target)))
    await relay._command(ctx, link, msgspec.json.encode(events.EndTerminals(["bob@example.com"], "unshared")))
    return control, await refusals.settled(ctx)


def test_an_agent_of_the_release_before_streams_gets_tunnel_for_ssh_and_nothing_it_cannot_read() -> None:
    control, refusals = run(ask(frozenset(), m.SshTarget()))
    assert [OLD_AGENT_MESSAGES.decode(cast(str, f)) for f in control.sent] == [
        m.TunnelRequest(tunnel_id="tun_abcdefghijkl")
    ]
    assert refusals == []


def test_an_old_agent_asked_for_a_terminal_is_refused_in_the_broker_with_a_sentence() -> None:
    target = m.PtyTarget(terminal=tp.OpenTerminal(email="bob@example.com"))
    control, refusals = run(ask(frozenset(), target))
    assert control.sent == []
    [refused] = [events.stream_events.decode(r) for r in refusals]
    assert isinstance(refused, events.Refused) and refused.status == 501 and refused.code == "agent_outdated"
    assert refused.message == "The pair agent in this Space's container is too old for terminals."


def test_an_agent_that_knows_streams_gets_the_target_and_the_end_of_terminals() -> None:
    target = m.TcpTarget(port=8080)
    control, _ = run(ask(frozenset(m.STREAM_TARGETS), target))
    assert [json.loads(cast(str, f)) for f in control.sent] == [
        {"type": "stream", "stream_id": "tun_abcdefghijkl", "target": {"kind": "tcp", "port": 8080, "shared": False}},
        {"type": "end_terminals", "emails": ["bob@example.com"], "reason": "unshared", "kicked": False},
    ]


# -- close codes ----------------------------------------------------------------------------


def test_the_codes_agents_and_proxies_of_the_last_release_read_keep_their_numbers() -> None:
    # Agents before CloseCode gave up a credential on {4401, 4409}; proxies print any reason.
    assert {int(c) for c in CREDENTIAL_ENDED} == {4401, 4409}
    assert for_status(401) == 4401 and for_status(409) == 4409 and for_status(503) == 4503
    assert for_status(422) == 4422  # invalid container facts (docs/architecture.md, trust boundaries)
    assert for_status(400) == CloseCode.BAD_DATA and for_status(500) == CloseCode.INTERNAL_ERROR


# -- a person who reads nothing holds up nobody -------------------------------------------------


class UnreadLink(FakeLink):
    """A person's side whose close never finishes by itself, as a WebSocket's close frame waits
    for flow control while the person reads nothing (broker.links.WebSocketLink bounds it)."""

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        await asyncio.Event().wait()


def test_a_close_that_hangs_holds_up_neither_other_endings_nor_its_own_container_side() -> None:
    async def scenario() -> None:
        ctx = context()
        await listening(ctx, "sp_a")
        stuck = Stream("s1", "sp_a", BOB.id, BOB.email, "port")
        stuck.client, stucks_agent = UnreadLink(), FakeLink()
        stuck.agent.set_result(stucks_agent)
        ctx.hub.streams[stuck.id] = stuck
        alices = add_stream(ctx, "s2", "sp_b", ALICE, "ssh")

        await events.end_streams(ctx, "sp_a", "bob@example.com stopped sharing.", people=[BOB])
        await events.end_streams(ctx, "sp_b", "You were removed from this Space.", people=[ALICE])
        await asyncio.wait_for(alices.closed_event.wait(), 5)  # the next event was not held up
        await asyncio.wait_for(stucks_agent.closed_event.wait(), 5)  # nothing more reaches the container
        assert stuck.ending.is_set()

    run(scenario())


class Shares:
    """The store calls `access.get_visible` makes, over a few Spaces and who they are shared with."""

    def __init__(self, people: list[UserRecord], spaces: dict[str, tuple[str, set[str]]]) -> None:
        self.people = {p.id: p for p in people}
        self.spaces = spaces  # id -> (owner id, shared with)

    async def user(self, user_id: str) -> UserRecord | None:
        return self.people.get(user_id)

    async def space(self, space_id: str) -> SpaceRecord | None:
        if space_id not in self.spaces:
            return None
        return SpaceRecord(space_id, self.spaces[space_id][0], "", space_id, "running", 0, 0, None, None, None, None)

    async def is_shared_with(self, space_id: str, user_id: str) -> bool:
        return user_id in self.spaces[space_id][1]


def test_after_a_gap_on_the_bus_streams_whose_person_lost_access_end() -> None:
    """Messages the bus lost (a PostgreSQL bus listening again) may have ended streams: the
    broker re-checks each person's access and ends the streams of those who lost it."""

    async def scenario() -> None:
        ctx = context()
        carol = UserRecord("usr_carol", "carol@example.com", False, 0)
        ctx.store = cast(Any, Shares([ALICE, BOB], {"sp_demo": (ALICE.id, set()), "sp_bobs": (BOB.id, set())}))
        unshared = add_stream(ctx, "s1", "sp_demo", BOB, "terminal")
        owners = add_stream(ctx, "s2", "sp_demo", ALICE, "ssh")
        own_space = add_stream(ctx, "s3", "sp_bobs", BOB, "ssh")
        removed = add_stream(ctx, "s4", "sp_demo", carol, "ssh")  # no such user any more
        deleted = add_stream(ctx, "s5", "sp_gone", ALICE, "ssh")

        await streams.recheck(ctx)
        for link in (unshared, removed, deleted):
            assert link.closed == Closed(CloseCode.REVOKED, streams.ACCESS_ENDED)
        assert owners.closed is None and own_space.closed is None

    run(scenario())


class SlowToCloseLink(FakeLink):
    """A container side whose close takes a round trip (another replica's link waits for the
    close handshake), so the splice, woken by the ending, gets to its own closes first."""

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        await asyncio.sleep(0.2)
        await super().close(code, reason)


def test_an_ended_stream_tells_its_person_why_however_slowly_its_container_side_closes() -> None:
    async def scenario() -> None:
        stream = Stream("s1", "sp_a", BOB.id, BOB.email, "terminal")
        person, container = FakeLink(), SlowToCloseLink()
        stream.agent.set_result(container)
        splicing = asyncio.create_task(streams.splice(stream, person))
        await asyncio.sleep(0)  # the splice is copying
        await stream.end("alice@example.com stopped sharing.")
        await splicing
        assert person.closed == Closed(CloseCode.REVOKED, "alice@example.com stopped sharing.")
        assert container.closed == Closed(CloseCode.REVOKED, "alice@example.com stopped sharing.")

    run(scenario())


# -- the agent reconnecting while a stream waits for it -------------------------------------------


class Registry:
    """The store calls a stream makes among replicas: where the agent's channel is recorded
    (`held`, changed by the test), and the connection log (kept, not checked)."""

    def __init__(self, held: AgentChannelRecord | None) -> None:
        self.held = held

    async def agent_channel(self, space_id: str) -> AgentChannelRecord | None:
        return self.held

    async def open_stream(self, tunnel: StreamRecord) -> None:
        pass

    async def close_stream(self, *args: object) -> None:
        pass

    async def audit(self, *args: object) -> None:
        pass


DEMO = SpaceRecord("sp_demo", ALICE.id, "", "demo", "running", 0, 0, None, None, None, None)
NOW = 1_800_000_000


def among_replicas(held: AgentChannelRecord | None) -> tuple[Context, Registry]:
    """A replica's context whose registry records the agent's channel on another replica."""
    registry = Registry(held)
    ctx = Context(settings=Settings(), database=cast(Any, registry), keyring=cast(Any, None), clock=lambda: NOW)
    ctx.replica = Replica("rep_here", "http://127.0.0.1:8001", "secret", NOW)
    return ctx, registry


DEAD = ReplicaRecord("rep_dead", "http://127.0.0.1:8002", NOW - 60, NOW)  # killed just now: not yet silent long


def test_a_stream_asked_of_a_channel_that_died_is_asked_again_when_the_agent_reconnects() -> None:
    """The agent's replica was killed: its channel is still recorded (for LIVE_FOR s), so the
    stream is asked of it and nobody hears. The agent reconnects (here); the stream is asked
    again there and opens, instead of answering 504 after AGENT_ANSWER_TIMEOUT."""

    async def scenario() -> None:
        ctx, _ = among_replicas(AgentChannelRecord("sp_demo", DEAD, attached_at=NOW - 30))
        commands = Collector(bus.agent_channel("sp_demo"))

        async def reconnect() -> None:
            await asyncio.sleep(0.2)  # the first ask is published meanwhile, to nobody
            link = AgentLink("sp_demo", FakeLink(), "digest")
            ctx.hub.attach(link)
            await ctx.bus.subscribe(commands.channel, commands)
            link.hears_commands = True
            await events.space_changed(ctx, "sp_demo")
            while not commands.got:
                await asyncio.sleep(0.01)
            [asked] = [events.agent_commands.decode(c) for c in commands.got]
            assert isinstance(asked, events.OpenStream)
            streams.agent_dialed(ctx, "sp_demo", asked.stream_id, FakeLink())

        async def opened() -> bool:
            async with streams.open_stream(ctx, DEMO, BOB, m.TcpTarget(port=8080), client_address="", look=_demo) as s:
                return s.agent.done()

        reconnecting = asyncio.create_task(reconnect())
        assert await asyncio.wait_for(opened(), 3)  # well within AGENT_ANSWER_TIMEOUT
        await reconnecting

    run(scenario())


async def _demo() -> SpaceRecord:
    return DEMO


def test_a_stream_whose_agent_does_not_come_back_says_it_is_reconnecting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streams, "AGENT_ANSWER_TIMEOUT", 0.3)

    async def scenario() -> Problem:
        ctx, registry = among_replicas(AgentChannelRecord("sp_demo", DEAD, attached_at=NOW - 30))

        async def dead_for_good() -> None:
            await asyncio.sleep(0.1)
            registry.held = None  # as the dead replica's records count for nothing once it is silent
            ctx.hub.changed("sp_demo")

        going = asyncio.create_task(dead_for_good())
        with pytest.raises(Problem) as refused:
            async with streams.open_stream(ctx, DEMO, BOB, m.SshTarget(), client_address="", look=_demo):
                pass
        await going
        return refused.value

    problem = run(scenario())
    assert (problem.status, problem.code) == (503, "agent_reconnecting")
    assert problem.message == 'The container of "demo" is reconnecting to the broker.'
    assert problem.detail == "Try again in a few seconds."
