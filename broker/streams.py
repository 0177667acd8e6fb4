"""Streams: a person reaches a target in a Space's container — its sshd, a terminal, a port — over
a connection the Space's agent dials out to the broker (Codespaces and Devfile workspaces take no
inbound connections). SSH, terminals and ports are one mechanism (Coder's agent shares
one dial for SSH, its reconnecting PTY and ports):

- `ready`: the Space can take a stream of this kind now (or soon: it waits a few seconds for an
  agent reconnecting or sshd starting), else a Problem that says why;
- `open_stream`: ask the agent (over the bus, wherever its control channel is) to open a stream
  to the target, wait for it to dial in (or refuse), log the stream (one row, with its kind);
- `splice`: copy messages both ways, keeping their kind (binary = bytes, text = a control
  protocol's JSON, so a terminal's messages pass through), counting bytes each way;
- `broker.events.end_streams`: the one way to end streams (unshare, kick, delete, down), which
  `on_event` carries out for the streams this process holds.

The listing of open streams (`pair spaces sessions`) and kick are here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from broker import access, credentials, emails, events, metrics, peering, spaces, terminals
from broker.context import Context, timestamp
from broker.errors import Problem, not_found
from broker.hub import Claim, Stream
from broker.links import Closed, Frame, Link
from broker.store import SpaceRecord, StreamRecord, UserRecord
from pair.api import models as m
from pair.api import readiness
from pair.api import terminal as tp
from pair.api.closecodes import SENTENCES, CloseCode

READY_WAIT = 5.0  # seconds a stream waits for a Space on its way up (agent reconnecting, sshd starting)
# Seconds for a connected agent to dial in. With READY_WAIT, under `pair spaces proxy`'s 15 s
# handshake timeout, so the person reads the broker's sentence, not a timeout.
AGENT_ANSWER_TIMEOUT = 8.0

KINDS: dict[type[m.StreamTarget], m.StreamKind] = {m.SshTarget: "ssh", m.PtyTarget: "terminal", m.TcpTarget: "port"}
# Ids go on the wire (an old agent dials AGENT_TUNNEL with an SSH one): `tun_` stays SSH's.
_ID_PREFIXES: dict[m.StreamKind, str] = {"ssh": "tun_", "terminal": "pty_", "port": "tcp_"}
# A terminal's is `terminal.open` or `terminal.join`, once the agent's `hello` names it. SSH's
# keeps `tunnel.open`: `pair-broker audit --action` filters on it and the log's older rows say it.
_AUDIT: dict[m.StreamKind, str] = {"ssh": "tunnel.open", "port": "port.open"}
CONTAINER_LOST = SENTENCES[CloseCode.CONTAINER_LOST]


def kind_of(target: m.StreamTarget) -> m.StreamKind:
    return KINDS[type(target)]


# -- opening ----------------------------------------------------------------------------------


def refusal(space: m.Space, kind: m.StreamKind) -> readiness.Refusal | None:
    """Why `space` cannot take a stream of `kind` now; None if it can, or soon may. SSH needs
    sshd serving; a terminal or a port needs only the agent, so a Space whose sshd is down
    (`starting`) still takes them."""
    if kind != "ssh" and space.state == "starting":
        return None
    return readiness.refusal(space)


Look = Callable[[], Awaitable[SpaceRecord]]


async def ready(
    ctx: Context, user: UserRecord, space_id: str, kind: m.StreamKind, *, look: Look | None = None
) -> SpaceRecord:
    """The Space, once `user` may reach it, its agent is connected and it takes `kind`. A Space
    on its way there (its agent reconnecting after a broker restart, sshd starting) is waited
    for, up to READY_WAIT seconds, woken by the hub rather than polled; one that cannot be
    (stopped, sshd failing) is refused at once with the reason. Raises Problem (404 for a Space
    `user` cannot see, 409 not running, 503 not yet). `look` reads the Space and decides the
    person's reach (default: `access.get_visible`; the app proxy's: broker.ports.reach)."""
    look = look or (lambda: access.get_visible(ctx, user, space_id))
    deadline = time.monotonic() + READY_WAIT
    while True:
        space = await look()
        refused = refusal(spaces.to_wire(space, user, None), kind)
        if refused is not None:
            raise Problem(409, *refused)
        connected = await ctx.agent_connected(space.id)
        if connected and (space.state == "running" or (kind != "ssh" and space.state == "starting")):
            return space
        left = deadline - time.monotonic()
        if left <= 0:
            raise _not_yet(ctx, space, connected)
        await ctx.hub.wait_changed(space.id, left)


def _not_yet(ctx: Context, space: SpaceRecord, connected: bool) -> Problem:
    """Why a Space that is on its way up did not get there in time."""
    if connected:
        return Problem(
            503,
            f'SSH in "{space.name}" is still starting.',
            "Try again in a few seconds; `pair spaces list` shows it running once it is.",
            "starting",
        )
    since = ctx.now() - ctx.started_at
    if since <= 3 * ctx.settings.agent_interval + READY_WAIT:  # within the sweep's grace after a restart
        return Problem(
            503,
            f'The container of "{space.name}" has not reconnected to the broker yet '
            f"(the broker restarted {since} s ago).",
            "Try again in a few seconds.",
            "agent_reconnecting",
        )
    return Problem(
        503,
        f'The container of "{space.name}" is not connected to the broker.',
        "Is its Codespace or workspace running? Its agent reconnects by itself when it is.",
        "agent_not_connected",
    )


@asynccontextmanager
async def open_stream(
    ctx: Context,
    space: SpaceRecord,
    person: UserRecord,
    target: m.StreamTarget,
    *,
    client_address: str,
    look: Look | None = None,
    app: str = "",
) -> AsyncIterator[Stream]:
    """A stream from `person` to `target` in `space` (which `ready` returned): the agent asked
    and dialed in, the stream logged. Yields it for `splice`; on leaving, the stream is
    forgotten and its log row closed with its byte counts and why it ended. A terminal stream
    is audited once the agent's first message (`hello`) names the terminal (`terminal.open`,
    `terminal.join`, then `terminal.leave`); one the agent answers `closed` is not, nor a
    control-only one (the agent's `hello` says `control`: it sees nothing of the terminal).

    An agent that reconnects while the stream waits (its replica died, its connection dropped)
    is asked again on its new channel: what was asked of the old one may be lost.

    Raises Problem before yielding: the agent refused (its sentence), did not answer within
    AGENT_ANSWER_TIMEOUT (504; 503 `agent_reconnecting` when its channel is gone by then), the
    Space stopped taking streams meanwhile (409), the person's access ended meanwhile
    (403/404); StoreUnavailable when the stream cannot be logged (every stream is logged: one
    that cannot be is refused). `look` as for `ready`; `app` names the
    shared port's address of an app proxy stream (for `events.end_streams(apps=…)`)."""
    kind = kind_of(target)
    stream = Stream(credentials.new_id(_ID_PREFIXES[kind]), space.id, person.id, person.email, kind, app)
    ctx.hub.streams[stream.id] = stream
    logged = False
    try:
        channel = await ctx.agent_channel(space.id)  # asked of it; of its successor if it reconnects meanwhile
        await events.ask_for_stream(ctx, space.id, stream.id, target)
        look = look or (lambda: access.get_visible(ctx, person, space.id))
        agent = await _agent_answer(ctx, person, stream, target, channel, look)
        control_only = False  # the agent said the attachment sees nothing: no join, no leave
        if kind == "terminal":
            hello = await _terminal_answer(space, stream, agent)
            control_only = hello is not None and hello.control
        await ctx.store.open_stream(
            StreamRecord(
                stream.id,
                space.id,
                person.id,
                person.email,
                client_address,
                ctx.now(),
                kind=kind,
                replica_id=ctx.replica.id if ctx.replica else "",
            )
        )
        if kind != "terminal":
            await ctx.store.audit(ctx.now(), person.email, _AUDIT[kind], space.id, stream.id)
        elif stream.terminal_id and not control_only:  # opened or joined; a refusal (`closed`) is neither
            joined = isinstance(target, m.PtyTarget) and isinstance(target.terminal, tp.JoinTerminal)
            action = "terminal.join" if joined else "terminal.open"
            await ctx.store.audit(ctx.now(), person.email, action, space.id, _terminal_detail(stream))
        logged = True
        metrics.OPEN_STREAMS.labels(kind).inc()
        metrics.RELAYED_BYTES.opened(stream)
        try:
            yield stream
        finally:
            metrics.OPEN_STREAMS.labels(kind).dec()
            metrics.RELAYED_BYTES.closed(stream)
    finally:
        ctx.hub.streams.pop(stream.id, None)
        stream.done.set()  # the agent's handler lets its connection go
        if not stream.agent.done():
            stream.agent.cancel()
        elif not stream.agent.cancelled() and stream.agent.exception() is None:
            await stream.agent.result().close(CloseCode.NORMAL, stream.close_reason)
        if logged:
            with contextlib.suppress(Exception):  # StoreUnavailable: the store told the operator
                await ctx.store.close_stream(
                    stream.id, ctx.now(), stream.bytes_in, stream.bytes_out, stream.close_reason or "closed"
                )
                if stream.terminal_id and not control_only:  # who left which terminal, how much flowed
                    detail = f"{_terminal_detail(stream)}: {stream.bytes_in} bytes in, {stream.bytes_out} out"
                    await ctx.store.audit(ctx.now(), person.email, "terminal.leave", space.id, detail)


def _terminal_detail(stream: Stream) -> str:
    """How the audit log names a terminal stream: its terminal, then the stream (the connection
    log's row): `TERMINAL_ID stream STREAM_ID`."""
    return f"{stream.terminal_id} stream {stream.id}"


async def _terminal_answer(space: SpaceRecord, stream: Stream, agent: Link) -> tp.Hello | None:
    """Read the agent's first message on a terminal stream, which the splice passes on first:
    `hello` names the terminal opened or joined (`stream.terminal_id`); `closed` (no such
    terminal, too many, no shell) leaves it empty, and reaches the person as the agent's words.
    Returns the `hello`, or None.
    Raises Problem 504 when the agent says nothing within AGENT_ANSWER_TIMEOUT, 403 when the
    stream was ended meanwhile."""
    try:
        stream.first = await asyncio.wait_for(agent.receive(), AGENT_ANSWER_TIMEOUT)
    except TimeoutError:
        raise Problem(
            504,
            f'The container of "{space.name}" did not answer.',
            "Its agent may be restarting; try again in a few seconds.",
            "agent_timeout",
        ) from None
    if stream.close_reason:  # ended while waiting (unshare, kick, down…)
        raise Problem(403, stream.close_reason, "", "revoked")
    if not isinstance(stream.first, Closed) and (hello := terminals.hello(stream.first)) is not None:
        stream.terminal_id = hello.terminal_id
        return hello
    return None


async def _agent_answer(
    ctx: Context, person: UserRecord, stream: Stream, target: m.StreamTarget, channel: object | None, look: Look
) -> Link:
    """The agent's end of the stream, asked of the agent's `channel`. If the Space's health
    changes meanwhile (the agent could not reach sshd, and says why), the person hears that at
    once rather than after the timeout; if the agent reconnects meanwhile (another channel, on
    any replica), it is asked again there."""
    deadline = time.monotonic() + AGENT_ANSWER_TIMEOUT
    while True:
        left = deadline - time.monotonic()
        changed = asyncio.ensure_future(ctx.hub.wait_changed(stream.space_id, max(left, 0)))
        await asyncio.wait((stream.agent, changed), return_when=asyncio.FIRST_COMPLETED)
        changed.cancel()
        if stream.agent.cancelled():  # ended while waiting (unshare, kick, down…)
            raise Problem(403, stream.close_reason or "The stream was ended.", "", "revoked")
        if stream.agent.done():
            return stream.agent.result()  # or the refusal's Problem
        space = await look()
        refused = refusal(spaces.to_wire(space, person, None), stream.kind)
        if refused is not None:
            raise Problem(409, *refused)
        now = await ctx.agent_channel(stream.space_id)
        if now is not None and now != channel:  # the agent reconnected: the old channel may never have heard
            channel = now
            await events.ask_for_stream(ctx, stream.space_id, stream.id, target)
        if time.monotonic() >= deadline:
            raise _no_answer(space, reconnecting=now is None)


def _no_answer(space: SpaceRecord, *, reconnecting: bool) -> Problem:
    """Why a stream's agent did not answer in time: its channel went (it reconnects by itself,
    e.g. after its replica died), or it is there and said nothing."""
    if reconnecting:
        return Problem(
            503,
            f'The container of "{space.name}" is reconnecting to the broker.',
            "Try again in a few seconds.",
            "agent_reconnecting",
        )
    return Problem(
        504,
        f'The container of "{space.name}" did not answer.',
        "Its agent may be restarting; try again in a few seconds.",
        "agent_timeout",
    )


def waits_here(ctx: Context, space_id: str, stream_id: str) -> bool:
    """Whether a person's stream `stream_id` of `space_id` held by this process waits for its agent."""
    stream = ctx.hub.streams.get(stream_id)
    return stream is not None and stream.space_id == space_id and not stream.agent.done()


def agent_dialed(ctx: Context, space_id: str, stream_id: str, link: Link) -> Stream:
    """Hand the agent's end of a stream to the person's side waiting for it; the caller keeps
    the link open until `stream.done`. Raises Problem 404 if no such stream waits for this Space."""
    if not waits_here(ctx, space_id, stream_id):
        raise stream_not_found()
    stream = ctx.hub.streams[stream_id]
    stream.agent.set_result(link)
    return stream


def stream_not_found() -> Problem:
    return Problem(404, "That stream was not found.", "It may have been closed already.", "not_found")


async def relay_leg(ctx: Context, stream_id: str, claim: Claim, agent: Link) -> None:
    """Carry a stream whose agent dialed this replica to the replica holding its person, which
    claimed it (broker.peering): the same splice, the claim's link in the person's place. The
    person's replica logs and counts it; here it is a leg (`Hub.legs`), ended with the others
    on shutdown."""
    leg = claim.leg
    stream = Stream(stream_id, leg.space_id, leg.user_id, leg.email, leg.kind, leg.app)
    stream.agent.set_result(agent)
    ctx.hub.legs[stream_id] = stream
    try:
        await splice(stream, claim.link)
    finally:
        ctx.hub.legs.pop(stream_id, None)
        stream.done.set()


# -- the splice -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameLimits:
    """What a person may send on a stream: the largest message, in bytes, per kind of frame, and
    `refusal`, why a text frame (a control protocol's JSON) is refused (None: it passes)."""

    binary: int
    text: int
    refusal: Callable[[str], str | None] = lambda _text: None
    # A text frame answered by the broker instead of passed on: the answer, sent back to the
    # person (the stream goes on), or None to pass the frame.
    answer: Callable[[str], Awaitable[str | None]] | None = None


# A terminal's protocol bounds what a person sends (pair.api.terminal); the broker enforces it too,
# so an oversized frame never reaches the container, nor a grant of a text that is no email.
TERMINAL_LIMITS = FrameLimits(binary=tp.MAX_INPUT_BYTES, text=tp.MAX_CONTROL_BYTES, refusal=terminals.refusal)
TOO_LARGE = "A message on this stream was larger than its protocol allows."


def terminal_limits(ctx: Context, space_id: str) -> FrameLimits:
    """TERMINAL_LIMITS, and grants to someone who cannot reach `space_id` answered by the broker
    (broker.terminals.grant_answer)."""
    return dataclasses.replace(TERMINAL_LIMITS, answer=functools.partial(terminals.grant_answer, ctx, space_id))


async def splice(stream: Stream, client: Link, *, limits: FrameLimits | None = None) -> None:
    """Copy between the person's `client` and the agent's end until either closes; each message
    keeps its kind. Each direction awaits the other side's send, so a slow reader slows the
    writer instead of growing a buffer. Either side closing closes both; the container's side
    vanishing (any close but a normal one) is told to the person as CONTAINER_LOST. A person's
    frame above `limits` closes the stream with 1009 (TOO_BIG), a text frame it refuses with
    4422 (INVALID) and its sentence; one it answers (`limits.answer`) gets the answer and goes
    no further. The agent's message read before the splice
    (`stream.first`) is passed on first."""
    agent = stream.agent.result()
    stream.client = client
    if stream.close_reason:  # ended between the agent dialing in and now
        await client.close(stream.close_code, stream.close_reason)
        return

    async def refuse(code: CloseCode, reason: str) -> Closed:
        stream.close_reason = reason
        await client.close(code, reason)
        return Closed(code, reason)

    async def pump(src: Link, dst: Link, inbound: bool) -> Closed:
        """Copy until `src` closes; return how it closed."""
        frame: Frame | Closed | None = None if inbound else stream.first
        while True:
            if frame is None:
                frame = await src.receive()
            if isinstance(frame, Closed):
                return frame
            size = len(frame) if isinstance(frame, bytes) else len(frame.encode())
            if inbound and limits is not None:
                if size > (limits.binary if isinstance(frame, bytes) else limits.text):
                    return await refuse(CloseCode.TOO_BIG, TOO_LARGE)
                if isinstance(frame, str) and (refused := limits.refusal(frame)) is not None:
                    return await refuse(CloseCode.INVALID, refused)
                if isinstance(frame, str) and limits.answer is not None:
                    answer = await limits.answer(frame)
                    if answer is not None:
                        await client.send_text(answer)
                        frame = None
                        continue
            if isinstance(frame, bytes):
                await dst.send_bytes(frame)
            else:
                await dst.send_text(frame)
            stream.carried(size, inbound=inbound)
            frame = None

    inbound = asyncio.create_task(pump(client, agent, True))
    outbound = asyncio.create_task(pump(agent, client, False))
    ended = asyncio.create_task(stream.ending.wait())  # end(): stop copying before the closes finish
    done, pending = await asyncio.wait((inbound, outbound, ended), return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    ends = await asyncio.gather(inbound, outbound, ended, return_exceptions=True)  # every error collected
    agent_end = ends[1]
    vanished = outbound in done and isinstance(agent_end, Closed) and agent_end.code != CloseCode.NORMAL
    if vanished and not stream.close_reason:  # the container's side went without closing: say so
        stream.close_reason = CONTAINER_LOST
        await client.close(CloseCode.CONTAINER_LOST, CONTAINER_LOST)
    # Ended (end()): the person reads why, whichever of end()'s closes and these comes first
    # (end() closes the container's side first, which may take a round trip to another replica).
    await client.close(stream.close_code, stream.close_reason)
    await agent.close(stream.close_code, stream.close_reason)


# -- ending -------------------------------------------------------------------------------------


async def on_event(ctx: Context, payload: bytes) -> None:
    """A `broker.events.StreamEvent` from the bus: end this process's part of the streams named,
    answer a waiting stream's person with the agent's refusal, or claim its agent's end from the
    replica it dialed."""
    event = events.stream_events.decode(payload)
    if isinstance(event, events.Dialed):
        if waits_here(ctx, event.space_id, event.stream_id):
            peering.on_dialed(ctx, ctx.hub.streams[event.stream_id], event.replica_id)
        return
    if isinstance(event, events.Refused):
        stream = ctx.hub.streams.get(event.stream_id)
        if stream is not None and not stream.agent.done():
            stream.agent.set_exception(Problem(event.status, event.message, event.detail, event.code))
        return
    user_ids = None if event.user_ids is None else set(event.user_ids)
    kinds = None if event.kinds is None else set(event.kinds)
    for stream in ctx.hub.streams_of(event.space_id, user_ids, kinds, event.apps):
        # Each in a task of its own, not awaited: the bus delivers the next event only when this
        # listener returns, and a person who reads nothing makes their close take CLOSE_WAIT s.
        _closing(stream.end(event.reason, event.code))


_CLOSES: set[asyncio.Task[None]] = set()  # held until done (the loop keeps only weak references)


def _closing(close: Coroutine[Any, Any, None]) -> None:
    task = asyncio.create_task(close)
    _CLOSES.add(task)
    task.add_done_callback(_CLOSES.discard)


ACCESS_ENDED = "Your access to this Space ended."


async def recheck(ctx: Context) -> None:
    """After the bus may have lost messages (broker.bus.Bus.on_gap): end the streams this
    process holds whose person may no longer reach their Space (unshared, the Space deleted,
    the person removed), as `end_streams` would have. App proxy streams are the app gate's to
    re-check (it does, on every request and every second)."""
    for stream in list(ctx.hub.streams.values()):
        if stream.app:
            continue
        person = await ctx.store.user(stream.user_id)
        try:
            if person is None:
                raise not_found("The user")
            await access.get_visible(ctx, person, stream.space_id)
        except Problem:
            await stream.end(ACCESS_ENDED)


SHUTDOWN_REASON = "The broker is restarting; connect again in a few seconds."


async def close_all(ctx: Context, timeout: float = 2.0) -> None:
    """On shutdown: end every stream and agent channel with 1012 and a reason, so people read a
    sentence and agents reconnect at once (they know the broker is coming back)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            ctx.hub.close_all(CloseCode.SERVICE_RESTART, SHUTDOWN_REASON, "the broker is restarting"), timeout
        )


# -- the listing and kick ----------------------------------------------------------------------


async def _open_streams(ctx: Context, space_id: str, *, full: bool) -> list[m.StreamInfo]:
    """The open streams of a Space, oldest first; without `full`, no address and no bytes."""
    live = {s.id: s for s in ctx.hub.streams_of(space_id)} if full else {}
    out = []
    for rec in await ctx.store.open_streams(space_id):
        s = live.get(rec.id)
        out.append(
            m.StreamInfo(
                id=rec.id,
                space_id=rec.space_id,
                email=rec.email,
                client_address=rec.client_address if full else "",
                opened_at=timestamp(rec.opened_at),
                bytes_in=s.bytes_in if s else 0,
                bytes_out=s.bytes_out if s else 0,
                kind=rec.kind,
            )
        )
    return out


async def listing(ctx: Context, user: UserRecord, space_id: str) -> list[m.StreamInfo]:
    """The open streams of a Space `user` owns, every kind. Raises Problem (404, 403 not_owner)."""
    space = await access.get_owned(ctx, user, space_id, "see the sessions of")
    return await _open_streams(ctx, space.id, full=True)


async def who_is_connected(ctx: Context, space: m.Space) -> list[m.StreamInfo]:
    """Who is in a Space, for the person `space` was made for by `visible` (so their access is
    already checked). Everyone with access sees who is connected and since when; only the owner
    also sees from where (`client_address`, host:port) and the bytes each way, as in `pair spaces
    sessions`, which is the owner's. For anyone else those fields are empty."""
    return await _open_streams(ctx, space.id, full=space.role == "owner")


async def kick(ctx: Context, user: UserRecord, space_id: str, email: str) -> int:
    """End every stream of the person `email` in a Space `user` owns (they may come back while
    it is shared with them); the number ended, from the connection log."""
    space = await access.get_owned(ctx, user, space_id, "end sessions in")
    target = await ctx.store.user_by_email(emails.normalize_email(email))
    if target is None:
        raise not_found(f"The user {email}")
    ended = sum(1 for rec in await ctx.store.open_streams(space.id) if rec.user_id == target.id)
    reason = f'{user.email} ended your session in "{space.name}".'
    await events.end_streams(ctx, space.id, reason, people=[target], kicked=True)
    await ctx.store.audit(ctx.now(), user.email, "space.kick", space.id, f"{target.email}: {ended}")
    return ended
