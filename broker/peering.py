"""Replicas reaching each other (issue 13, as Coder's DERP mesh and Teleport's proxy peering do):
this replica's place in the registry (broker.replicas) and the internal WebSocket that splices a
stream whose person and agent reached different replicas.

A person's stream is held by the replica their WebSocket reached (A): it asks the agent over
the bus, wherever its control channel is, and waits for the agent to dial in. The agent dials
the broker's public URL, so the load balancer may hand that to another replica (X):

1. X finds no such stream of that Space waiting; it parks the agent's connection (not yet
   accepted) and publishes `events.Dialed(stream, space, X)` (`wait_claim`);
2. A hears it and connects to X's internal address at PEER_STREAM with the replicas' secret and
   who the stream is for (`claim`); that link is the stream's agent end on A, and A splices
   the person to it with `broker.streams.splice` as it would the agent itself;
3. X accepts both and carries the agent's end to A's link with the same splice
   (`broker.streams.relay_leg`); either side closing closes the other.

Everything else that crosses replicas goes through the bus (broker.events). Nothing here runs
for a single broker (SQLite): `ctx.replica` is None.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import ssl
from urllib.parse import urlsplit, urlunsplit

import httpx
import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from broker import credentials, events, replicas
from broker.context import Context, encryption_key
from broker.errors import Problem
from broker.hub import Claim, Leg, Stream
from broker.links import CLOSE_WAIT, Closed, Frame, close_reason
from broker.replicas import Replica
from broker.store import StoreError
from broker.store.backends import is_postgres
from pair.api.closecodes import CloseCode

log = logging.getLogger("pair.broker")

PEER_STREAM = "/internal/v1/streams/{stream_id}"  # the agent's end of a stream, for another replica
WHOAMI = "/internal/v1/replica"  # which replica answers at an address: {"id": …}
LEG_HEADER = "x-pair-leg"  # who the stream is for: base64url of the Leg's JSON
CLAIM_WAIT = 5.0  # seconds an agent's connection waits for the replica holding its stream
CONNECT_TIMEOUT = 5.0  # seconds to open the internal WebSocket
MAX_MESSAGE = 16 * 1024 * 1024  # bytes, as uvicorn bounds a WebSocket message by default

_tasks: set[asyncio.Task[None]] = set()  # claims under way (held so they are not collected)


# -- this replica in the registry ---------------------------------------------------------------


async def start(ctx: Context) -> asyncio.Task[None] | None:
    """On PostgreSQL: register this process as a replica (`ctx.replica`), close the streams the
    log holds open for replicas that are gone, and beat until cancelled (the task returned).
    None for a single broker."""
    if not is_postgres(ctx.settings.database_location):
        return None
    key = encryption_key(ctx.settings)
    assert key is not None, "open_context refuses PostgreSQL without an encryption key"
    now = ctx.now()
    ctx.replica = Replica(
        credentials.new_id("rep_"),
        ctx.settings.replica_url,
        replicas.derive_secret(key),
        now,
        app_secret=replicas.derive(key, replicas.APP_SECRET_INFO),
    )
    await ctx.store.beat_replica(ctx.replica.record(now))
    live = {r.id for r in await ctx.store.live_replicas(now - replicas.LIVE_FOR)}
    await ctx.store.close_dangling_streams(now, keep=live)
    log.info("replica %s reachable at %s (%d live)", ctx.replica.id, ctx.replica.address, len(live))
    return asyncio.create_task(_beat(ctx, ctx.replica, live))


async def _beat(ctx: Context, replica: Replica, live: set[str]) -> None:
    """Every BEAT seconds, `beat` (until cancelled)."""
    while True:
        await asyncio.sleep(replicas.BEAT)
        try:
            live = await beat(ctx, replica, live)
        except StoreError:
            pass  # the store told the operator (rate-limited); the next beat tries again
        except Exception:  # one failed beat must not end the loop
            log.exception("a replica beat failed")


async def beat(ctx: Context, replica: Replica, live: set[str]) -> set[str]:
    """Say this replica is alive; when another one of `live` went (killed, cut off), close the
    streams the log still holds open for it; forget the replicas gone for longer than
    FORGET_AFTER. Finding this replica forgotten (it stalled that long), record the agent
    channels it holds again. The ids of the replicas alive now."""
    now = ctx.now()
    if not await ctx.store.beat_replica(replica.record(now)):
        await _hold_again(ctx, replica, now)
    now_live = {r.id for r in await ctx.store.live_replicas(now - replicas.LIVE_FOR)}
    if live - now_live:
        log.warning("replica gone: %s", ", ".join(sorted(live - now_live)))
        await ctx.store.close_dangling_streams(now, keep=now_live)
    forgotten = await ctx.store.forget_replicas(now - replicas.FORGET_AFTER)
    if forgotten:
        log.info("forgot replicas gone for over %d s: %s", replicas.FORGET_AFTER, ", ".join(forgotten))
    return now_live


async def _hold_again(ctx: Context, replica: Replica, now: int) -> None:
    """This replica was forgotten while it lived: record again the agent channels it holds,
    and what each agent last reported."""
    log.warning(
        "replica %s was silent for over %d s and forgotten; recording its %d agent channels again",
        replica.id,
        replicas.FORGET_AFTER,
        len(ctx.hub.agents),
    )
    for agent in list(ctx.hub.agents.values()):
        await ctx.store.hold_agent_channel(agent.space_id, replica.id, now)
        await ctx.store.report_agent(agent.space_id, replica.id, *agent.report())


async def stop(ctx: Context, beating: asyncio.Task[None] | None) -> None:
    """Stop beating and leave the registry (the others stop counting on this replica at once)."""
    if beating is not None:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
    if ctx.replica is not None:
        with contextlib.suppress(StoreError):
            await ctx.store.remove_replica(ctx.replica.id)


# -- the agent's end dialed the wrong replica: park it until the right one claims it -------------


async def wait_claim(ctx: Context, space_id: str, stream_id: str) -> Claim | None:
    """An agent of `space_id` dialed this replica for `stream_id`, which another replica holds:
    say so on the bus and wait up to CLAIM_WAIT seconds for that replica's claim (`claimed`).
    None when nobody claims it (no such stream anywhere)."""
    assert ctx.replica is not None
    if stream_id in ctx.hub.parked:
        return None
    future: asyncio.Future[Claim] = asyncio.get_running_loop().create_future()
    ctx.hub.parked[stream_id] = (space_id, future)
    try:
        await events.stream_dialed(ctx, stream_id, space_id, ctx.replica.id)
        return await asyncio.wait_for(future, CLAIM_WAIT)
    except TimeoutError:
        return None
    finally:
        ctx.hub.parked.pop(stream_id, None)


def parked(ctx: Context, stream_id: str, leg: Leg) -> asyncio.Future[Claim] | None:
    """The parked agent connection a claim for `stream_id` of `leg.space_id` is for, if one waits."""
    found = ctx.hub.parked.get(stream_id)
    if found is None or found[0] != leg.space_id or found[1].done():
        return None
    return found[1]


def encode_leg(leg: Leg) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(leg)).decode()


def decode_leg(text: str) -> Leg:
    """The Leg a LEG_HEADER carries. ValueError when it does not hold one."""
    try:
        return msgspec.json.decode(base64.urlsafe_b64decode(text.encode()), type=Leg)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        raise ValueError(f"not a stream leg: {exc}") from None


# -- the replica holding the stream claims its agent's end --------------------------------------


def on_dialed(ctx: Context, stream: Stream, replica_id: str) -> None:
    """`stream`'s agent dialed `replica_id`: fetch its end from there (in a task of its own, so
    the bus's next messages are not held up)."""
    task = asyncio.create_task(claim(ctx, stream, replica_id))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def claim(ctx: Context, stream: Stream, replica_id: str) -> None:
    """Connect to `replica_id`'s PEER_STREAM for `stream` and make that link the stream's agent
    end. Nothing happens when the replica is gone or refuses: the person's wait then ends as
    any unanswered stream does (broker.streams)."""
    if ctx.replica is None or replica_id == ctx.replica.id:
        return
    try:
        holders = await ctx.store.live_replicas(ctx.now() - replicas.LIVE_FOR)
    except StoreError:
        return
    holder = next((r for r in holders if r.id == replica_id), None)
    if holder is None:
        return
    leg = Leg(stream.space_id, stream.user_id, stream.email, stream.kind, stream.app)
    url = peer_url(holder.address, stream.id)
    try:
        ws = await connect(
            url,
            additional_headers={"Authorization": ctx.replica.authorization(), LEG_HEADER: encode_leg(leg)},
            compression=None,
            open_timeout=CONNECT_TIMEOUT,
            max_size=MAX_MESSAGE,
            ping_interval=20,
            ping_timeout=20,
            close_timeout=CLOSE_WAIT,  # a replica that stopped reading holds up nobody
        )
    except (OSError, TimeoutError, WebSocketException) as exc:
        log.warning("could not reach replica %s at %s for stream %s: %s", replica_id, holder.address, stream.id, exc)
        if not stream.agent.done():  # the person hears it is the broker's fault, not the container's
            stream.agent.set_exception(unreachable_replica())
        return
    link = PeerLink(ws)
    if stream.agent.done():  # ended, refused or answered meanwhile
        await link.close()
        return
    stream.agent.set_result(link)


def unreachable_replica() -> Problem:
    """What a person reads when their stream's agent end is at a replica this one cannot reach
    (its --replica-address is wrong, or the internal network is cut): the broker's fault."""
    return Problem(
        502,
        "Another broker replica could not be reached to carry this stream.",
        "This is the broker's fault, not the container's: try again, and tell the broker's operator"
        " (its log names the replica and its --replica-address).",
        "unavailable",
    )


async def check_address(ctx: Context) -> bool:
    """Once serving: ask this replica's own --replica-address which replica answers there
    (WHOAMI, with the replicas' secret). Logs one clear error when nothing answers or another
    broker does (the other replicas could not reach this one's streams), one info line when it
    is itself. True when it is itself, or for a single broker."""
    replica = ctx.replica
    if replica is None:
        return True
    url = replica.address.rstrip("/") + WHOAMI
    try:
        async with httpx.AsyncClient(timeout=CONNECT_TIMEOUT, verify=ssl.create_default_context()) as client:
            answer = await client.get(url, headers={"Authorization": replica.authorization()})
        found = answer.json().get("id") if answer.status_code == 200 else f"HTTP {answer.status_code}"
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        found = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if found == replica.id:
        log.info("replica %s answers at its --replica-address %s", replica.id, replica.address)
        return True
    said = "another broker answers there" if isinstance(found, str) and found.startswith("rep_") else found
    log.error(
        "replica %s cannot be reached at its --replica-address %s (%s): the other replicas cannot carry"
        " streams through it; set --replica-address (PAIR_BROKER_REPLICA_ADDRESS) to the URL they reach it at",
        replica.id,
        replica.address,
        said,
    )
    return False


def peer_url(address: str, stream_id: str) -> str:
    """The WebSocket URL of PEER_STREAM for `stream_id` at a replica's `address` (http → ws)."""
    parts = urlsplit(address)
    scheme = "wss" if parts.scheme == "https" else "ws"
    path = parts.path.rstrip("/") + PEER_STREAM.format(stream_id=stream_id)
    return urlunsplit((scheme, parts.netloc, path, "", ""))


class PeerLink:
    """A Link over the internal WebSocket to another replica (the client side)."""

    __slots__ = ("ws",)

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send_text(self, text: str) -> None:
        await self.ws.send(text)

    async def send_bytes(self, data: bytes) -> None:
        await self.ws.send(data)

    async def receive(self) -> Frame | Closed:
        try:
            return await self.ws.recv()
        except ConnectionClosed as exc:
            if exc.rcvd is None:  # the connection dropped without a close frame (the replica died)
                return Closed(CloseCode.ABNORMAL)
            return Closed(exc.rcvd.code, exc.rcvd.reason)

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        with contextlib.suppress(Exception):  # gone already, or a code no frame may carry
            await self.ws.close(int(code), close_reason(reason))
