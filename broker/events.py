"""What the broker announces on the bus (broker.bus), and the one function that publishes each.

Every room may call these, and none needs to know who listens: the replica holding a Space's
agent control channel acts on `AgentCommand`s (broker.relay), every replica ends its own part of
the streams an `EndStreams` names, answers a waiting stream's `Refused` and claims its agent's
end where a `Dialed` says it is (broker.streams), drops a Space's cached authorized keys on
`SNAPSHOTS` (broker.spaces) and wakes what waits on a Space on `SPACES`. Payloads carry ids and
short sentences only, never a snapshot: a receiver reads the rest from the store.

The messages are msgspec structs tagged by `type`; unknown fields are ignored, so replicas of
adjacent releases can share a bus during a rolling upgrade.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence

import msgspec

from broker import bus
from broker.context import Context
from broker.errors import Problem
from broker.store import UserRecord
from pair.api import models as m
from pair.api.closecodes import CloseCode

# -- to the replica holding an agent's control channel (bus.agent_channel(space_id)) ---------


class Push(msgspec.Struct, tag="push", tag_field="type"):
    """The Space's keys or desired state changed: send its agent a fresh heartbeat reply."""

    start_ssh: bool = False  # the owner asked for SSH (`up`): start sshd even if it failed before


class OpenStream(msgspec.Struct, tag="stream", tag_field="type"):
    """Ask the agent for a stream to `target`, which will dial the broker at AGENT_STREAM."""

    stream_id: str
    target: m.StreamTarget


class EndTerminals(msgspec.Struct, tag="end_terminals", tag_field="type"):
    """Tell the agent these people's terminals end (`emails` None: everyone's)."""

    emails: list[str] | None
    reason: str
    kicked: bool = False  # the owner ended their streams (`pair spaces kick`); their access goes on


class Recheck(msgspec.Struct, tag="recheck", tag_field="type"):
    """The Space's agent credential may have died (the Space deleted, bootstrapped again): the
    holder checks its channel's credential and closes it if so, saying `reason`."""

    reason: str


AgentCommand = Push | OpenStream | EndTerminals | Recheck

# -- to every replica (bus.STREAMS) -----------------------------------------------------------


class EndStreams(msgspec.Struct, tag="end", tag_field="type"):
    """End the streams of `space_id` whose person is in `user_ids` (None: everyone's), whose
    kind is in `kinds` (None: every kind) and, for the app proxy's, whose shared port's address
    is in `apps` (None: any stream), closing them with `code` and `reason`."""

    space_id: str
    reason: str
    user_ids: list[str] | None = None
    kinds: list[m.StreamKind] | None = None
    code: int = CloseCode.REVOKED
    apps: list[str] | None = None


class Refused(msgspec.Struct, tag="refused", tag_field="type"):
    """The agent will not open the stream `stream_id`: its person is answered with this Problem."""

    stream_id: str
    status: int
    message: str
    detail: str
    code: m.ErrorCode


class Dialed(msgspec.Struct, tag="dialed", tag_field="type"):
    """The agent of `space_id` dialed replica `replica_id` for the stream `stream_id`, which it
    does not hold: the replica that does claims it there (broker.peering)."""

    stream_id: str
    space_id: str
    replica_id: str


StreamEvent = EndStreams | Refused | Dialed

_encoder = msgspec.json.Encoder()
agent_commands = msgspec.json.Decoder(AgentCommand)
stream_events = msgspec.json.Decoder(StreamEvent)


async def push(ctx: Context, space_id: str, *, start_ssh: bool = False) -> None:
    """A Space's authorized keys or desired state changed: every replica forgets its cached
    keys, and its agent, wherever it is connected, gets a fresh reply at once."""
    ctx.snapshots.pop(space_id, None)  # this process at once; the others through the bus
    await ctx.bus.publish(bus.SNAPSHOTS, space_id.encode())
    await ctx.bus.publish(bus.agent_channel(space_id), _encoder.encode(Push(start_ssh=start_ssh)))


async def ask_for_stream(ctx: Context, space_id: str, stream_id: str, target: m.StreamTarget) -> None:
    await ctx.bus.publish(bus.agent_channel(space_id), _encoder.encode(OpenStream(stream_id, target)))


async def credential_changed(ctx: Context, space_id: str, reason: str) -> None:
    """The Space's agent credential was revoked or replaced (delete, bootstrap)."""
    await ctx.bus.publish(bus.agent_channel(space_id), _encoder.encode(Recheck(reason)))


async def stream_refused(ctx: Context, stream_id: str, problem: Problem) -> None:
    refused = Refused(stream_id, problem.status, problem.message, problem.detail, problem.code)
    await ctx.bus.publish(bus.STREAMS, _encoder.encode(refused))


async def stream_dialed(ctx: Context, stream_id: str, space_id: str, replica_id: str) -> None:
    await ctx.bus.publish(bus.STREAMS, _encoder.encode(Dialed(stream_id, space_id, replica_id)))


async def space_changed(ctx: Context, space_id: str) -> None:
    """A Space's agent connected or its state or health moved: every replica wakes the streams
    waiting on it (`Hub.changed`), this one at once."""
    ctx.hub.changed(space_id)
    await ctx.bus.publish(bus.SPACES, space_id.encode())


async def end_streams(
    ctx: Context,
    space_id: str,
    reason: str,
    *,
    people: Sequence[UserRecord] | None = None,
    kinds: Collection[m.StreamKind] | None = None,
    code: CloseCode = CloseCode.REVOKED,
    apps: Collection[str] | None = None,
    kicked: bool = False,
) -> None:
    """The one way to end streams: those of `people` (None: everyone's) in a Space, of `kinds`
    (None: all), on every replica, each closed with `code` and `reason` (one sentence the person
    reads). Terminals go further: the agent also ends the people's attachments and the
    terminals they started (or all of them), and drops their grants. `apps` narrows it to the
    app proxy's streams to those shared ports' addresses (a port unshared, its level narrowed).
    Used by unshare, kick (`kicked`: the people's access goes on, which the others in their
    terminals are told), delete, down and broker.ports."""
    wanted = None if kinds is None else sorted(kinds)
    if people is not None and not people:
        return
    user_ids = None if people is None else [p.id for p in people]
    addresses = None if apps is None else sorted(apps)
    for message in _packed(user_ids, lambda ids: EndStreams(space_id, reason, ids, wanted, int(code), addresses)):
        await ctx.bus.publish(bus.STREAMS, message)
    if (kinds is None or "terminal" in kinds) and apps is None:
        emails = None if people is None else [p.email for p in people]
        for message in _packed(emails, lambda some: EndTerminals(some, reason, kicked)):
            await ctx.bus.publish(bus.agent_channel(space_id), message)


def _packed(items: list[str] | None, make: Callable[[list[str] | None], msgspec.Struct]) -> Iterator[bytes]:
    """`make(items)` encoded, split into as many messages as it takes to keep each within
    bus.MAX_PAYLOAD (a long list of people)."""
    if items is None:
        yield _encoder.encode(make(None))
        return
    batch: list[str] = []
    for item in items:
        if batch and len(_encoder.encode(make([*batch, item]))) > bus.MAX_PAYLOAD:
            yield _encoder.encode(make(batch))
            batch = []
        batch.append(item)
    if batch:
        yield _encoder.encode(make(batch))
