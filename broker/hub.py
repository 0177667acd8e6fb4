"""Who is connected to this broker process right now: each Space's agent control channel, and
each open stream. Links are `broker.links.Link`s, not Starlette WebSockets, so a link to another
replica can take a place here.

It is in-process state. What other processes or replicas must hear goes through the bus
(broker.events): a push reaches the agent wherever its channel is, and "end these streams" every
replica's streams. `changed` (a Space's state moved, for a stream waiting on it) is still local.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from dataclasses import dataclass, field

import msgspec

from broker.links import Closed, Frame, Link
from pair.api.closecodes import CloseCode
from pair.api.models import BrokerMessage, StreamKind
from pair.api.terminal import TerminalInfo


@dataclass(eq=False)
class AgentLink:
    """An agent's control channel. `streams` is what the agent said it can dial in its first
    heartbeat (`Heartbeat.streams`): empty for agents that predate streams (SSH by `tunnel`)."""

    space_id: str
    link: Link
    credential_digest: str
    streams: frozenset[str] = frozenset()
    listening: tuple[int, ...] = ()  # the ports listening in the container, as its last heartbeat said
    terminals: list[TerminalInfo] = field(default_factory=list)  # as its latest heartbeat listed them
    introduced: asyncio.Event = field(default_factory=asyncio.Event)  # set by the first heartbeat
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Its bus subscription is made (broker.relay): a command published now reaches it. Until
    # then it is attached but deaf, and counts as connected nowhere (Context.agent_channel).
    hears_commands: bool = False

    def report(self) -> tuple[str, str]:
        """What the agent last reported besides its state, as the replicas' registry keeps it
        (`Store.report_agent`): its terminals and listening ports, each in JSON."""
        return msgspec.json.encode(self.terminals).decode(), msgspec.json.encode(self.listening).decode()

    async def send(self, message: BrokerMessage) -> None:
        async with self.lock:  # one frame at a time from the many tasks that push
            await self.link.send_text(msgspec.json.encode(message).decode())

    async def wait_introduced(self) -> None:
        """Until the channel's first heartbeat said what the agent can do. Every agent, of any
        release, heartbeats first, so a silent one is not yet known, not old: it is waited for
        (it once was for 5 s, and then a slow new agent was told it was too old for terminals).
        The wait needs no bound of its own: it runs in the channel's bus subscription, which
        ends with the channel, and a person's stream asked of a slow agent keeps its own
        timeout (broker.streams.AGENT_ANSWER_TIMEOUT)."""
        await self.introduced.wait()


@dataclass(eq=False)
class Stream:
    """One stream between a person and a target in a Space's container: its agent's link once
    the agent dialed in (or the Problem that refused it), its byte counts and how it ended."""

    id: str
    space_id: str
    user_id: str
    email: str
    kind: StreamKind
    app: str = ""  # the shared port's address (`PORT--SPACE--OWNER`) for the app proxy's streams
    agent: asyncio.Future[Link] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    client: Link | None = None  # the person's side, once spliced
    first: Frame | Closed | None = None  # the agent's first message, read before the splice, which passes it on first
    terminal_id: str = ""  # a terminal stream's terminal, once the agent's `hello` named it
    done: asyncio.Event = field(default_factory=asyncio.Event)
    started: float = field(default_factory=time.monotonic)
    bytes_in: int = 0  # person → container
    bytes_out: int = 0  # container → person
    close_reason: str = ""
    close_code: int = CloseCode.NORMAL  # what end() closes both sides with (and the splice, if it gets there first)
    ending: asyncio.Event = field(default_factory=asyncio.Event)  # set by end(): the splice stops

    def carried(self, size: int, *, inbound: bool) -> None:
        """Count `size` bytes relayed person → container (`inbound`) or back, as they move: the
        log row's totals, which /metrics reads too (broker.metrics.RelayedBytes)."""
        if inbound:
            self.bytes_in += size
        else:
            self.bytes_out += size

    async def end(self, reason: str, code: int = CloseCode.REVOKED) -> None:
        """Close both sides with `code` and `reason`; the splice stops at once (`ending`) and the
        log row closes. The container's side closes first, so nothing more the person sends
        reaches it however long the person's side takes (each close at most CLOSE_WAIT s)."""
        if self.close_reason:
            return
        self.close_reason, self.close_code = reason, code
        self.ending.set()
        if self.agent.done() and not self.agent.cancelled() and self.agent.exception() is None:
            await self.agent.result().close(code, reason)
        elif not self.agent.done():
            self.agent.cancel()  # still waiting for the agent: the opener gives up
        if self.client is not None:
            await self.client.close(code, reason)


@dataclass(frozen=True)
class Leg:
    """Who a stream relayed for another replica is for (broker.peering), as that replica said."""

    space_id: str
    user_id: str
    email: str
    kind: StreamKind
    app: str = ""


@dataclass(eq=False)
class Claim:
    """Another replica's claim on an agent's end of a stream that dialed this one: its link (an
    internal WebSocket) and who the stream is for; `done` once this replica let both go."""

    link: Link
    leg: Leg
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Hub:
    def __init__(self) -> None:
        self.agents: dict[str, AgentLink] = {}
        self.streams: dict[str, Stream] = {}  # the streams of people connected to this process
        # Streams whose agent dialed this process while their person is on another replica:
        # waiting for that replica's claim (by stream id, with the Space the agent is of), and
        # the legs relayed for it (broker.peering, broker.streams.relay_leg).
        self.parked: dict[str, tuple[str, asyncio.Future[Claim]]] = {}
        self.legs: dict[str, Stream] = {}
        self._changes: dict[str, asyncio.Event] = {}  # per Space, for those waiting on it

    def attach(self, link: AgentLink) -> AgentLink | None:
        """Register an agent's channel; return the one it replaces (a reconnect), if any."""
        old = self.agents.get(link.space_id)
        self.agents[link.space_id] = link
        self.changed(link.space_id)
        return old

    def changed(self, space_id: str) -> None:
        """Wake everyone waiting on this Space: its agent attached, or its state or health moved."""
        event = self._changes.pop(space_id, None)
        if event is not None:
            event.set()

    async def wait_changed(self, space_id: str, timeout: float) -> bool:
        """Wait until `changed(space_id)` or `timeout` seconds; True if it changed."""
        event = self._changes.setdefault(space_id, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def detach(self, link: AgentLink) -> None:
        if self.agents.get(link.space_id) is link:
            del self.agents[link.space_id]

    def holds(self, link: AgentLink) -> bool:
        """True while `link` is its Space's current channel (not replaced by a newer one)."""
        return self.agents.get(link.space_id) is link

    def connected(self, space_id: str) -> bool:
        return space_id in self.agents

    def hearing(self, space_id: str) -> AgentLink | None:
        """The Space's agent channel here, once it hears its commands on the bus."""
        agent = self.agents.get(space_id)
        return agent if agent is not None and agent.hears_commands else None

    def streams_of(
        self,
        space_id: str,
        user_ids: Collection[str] | None = None,
        kinds: Collection[str] | None = None,
        apps: Collection[str] | None = None,
    ) -> list[Stream]:
        return [
            s
            for s in self.streams.values()
            if s.space_id == space_id
            and (user_ids is None or s.user_id in user_ids)
            and (kinds is None or s.kind in kinds)
            and (apps is None or s.app in apps)
        ]

    async def close_all(self, code: int, reason: str, agent_reason: str) -> None:
        """Close every stream (`reason` reaches the person, e.g. through `pair spaces proxy`) and
        every agent channel, e.g. with 1012 when the broker stops: sent before the server drops
        the connections, so each side knows why and the agents come back at once."""
        await asyncio.gather(*(s.end(reason, code) for s in [*self.streams.values(), *self.legs.values()]))
        await asyncio.gather(*(agent.link.close(code, agent_reason) for agent in list(self.agents.values())))
