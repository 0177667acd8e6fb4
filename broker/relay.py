"""The relay: the agent's control channel, and tunnels that splice a person's SSH stream onto a
connection the agent dials to its local sshd. Codespaces and Devfile workspaces take no inbound
connections, so both sides dial out to the broker.

Bytes are binary WebSocket frames, compression off (on random bytes it costs ~25x), and each
direction awaits the other side's send, so a slow reader slows the writer instead of growing a
buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import msgspec
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from broker import access, accounts, agents, credentials, spaces
from broker.context import Context
from broker.errors import Problem
from broker.http import as_problem, bearer, problem_response
from broker.hub import AgentLink, Tunnel
from broker.store import SpaceRecord, StoreUnavailable, TunnelRecord, UserRecord
from pair.api import endpoints as ep
from pair.api import models as m
from pair.api import readiness

log = logging.getLogger("pair.broker.relay")

READY_WAIT = 5.0  # seconds a tunnel waits for a Space on its way up (agent reconnecting, sshd starting)
# Seconds for a connected agent to dial in. With READY_WAIT, under `pair spaces proxy`'s 15 s
# handshake timeout, so the person reads the broker's sentence, not a timeout.
AGENT_ANSWER_TIMEOUT = 8.0


async def deny(ws: WebSocket, problem: Problem) -> None:
    """Refuse the upgrade with our JSON error body where the server allows it."""
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(problem_response(problem))
    else:
        await ws.close(code=1008, reason=problem.message[:120])


async def agent_connect(ws: WebSocket) -> None:
    ctx: Context = ws.app.state.ctx
    try:
        space = await agents.authenticate_agent(ctx, bearer(ws))
    except (Problem, StoreUnavailable) as exc:
        await deny(ws, as_problem(exc))
        return
    await ws.accept()
    link = AgentLink(space.id, ws)
    replaced = ctx.hub.attach(link)
    if replaced is not None:
        with contextlib.suppress(Exception):
            await replaced.ws.close(code=4000, reason="replaced by a newer connection")
    try:
        while True:
            message = msgspec.json.decode(await ws.receive_text(), type=m.HeartbeatMessage)
            current = await ctx.store.space_by_credential(credentials.digest(bearer(ws)))
            if current is None:
                await ws.close(code=4401, reason="the agent credential is no longer valid")
                return
            reply = await agents.heartbeat(ctx, current, message.heartbeat)
            await link.send(m.ReplyMessage(reply=reply))
    except WebSocketDisconnect:
        pass
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        await ws.close(code=1007, reason=f"bad message: {exc}"[:120])
    except (Problem, StoreUnavailable) as exc:  # the agent reconnects after a 4503
        problem = as_problem(exc)
        await ws.close(code=4000 + problem.status, reason=problem.message[:120])
    finally:
        ctx.hub.detach(link)


async def space_tunnel(ws: WebSocket) -> None:
    """A person's end of a tunnel: authorize, wait until the Space can take it, ask the agent to
    dial in, splice."""
    ctx: Context = ws.app.state.ctx
    try:
        _, user = await accounts.authenticate(ctx, bearer(ws))
        space = await _ready(ctx, user, ws.path_params["space_id"])
    except (Problem, StoreUnavailable) as exc:
        await deny(ws, as_problem(exc))
        return
    tunnel = Tunnel(credentials.new_id("tun_"), space.id, user.id, user.email, ws)
    ctx.hub.tunnels[tunnel.id] = tunnel
    try:
        await ctx.hub.send(space.id, m.TunnelRequest(tunnel_id=tunnel.id))
        try:
            agent_ws = await _agent_answer(ctx, user, tunnel)
        except Problem as problem:
            await deny(ws, problem)
            return
        client = ws.client
        try:  # every tunnel is logged: one that cannot be is refused
            await ctx.store.open_tunnel(
                TunnelRecord(
                    tunnel.id,
                    space.id,
                    user.id,
                    user.email,
                    f"{client.host}:{client.port}" if client else "",
                    ctx.now(),
                )
            )
            await ctx.store.audit(ctx.now(), user.email, "tunnel.open", space.id, tunnel.id)
        except StoreUnavailable as exc:
            await deny(ws, as_problem(exc))
            return
        await ws.accept(headers=[(ep.HOST_KEYS_HEADER.encode(), _host_keys(space).encode())])
        await splice(tunnel, ws, agent_ws)
    finally:
        ctx.hub.tunnels.pop(tunnel.id, None)
        tunnel.done.set()
        if not tunnel.agent.done():
            tunnel.agent.cancel()
        with contextlib.suppress(StoreUnavailable):  # the store told the operator
            await ctx.store.close_tunnel(
                tunnel.id, ctx.now(), tunnel.bytes_in, tunnel.bytes_out, tunnel.close_reason or "closed"
            )


async def _ready(ctx: Context, user: UserRecord, space_id: str) -> SpaceRecord:
    """The Space once its agent is connected and it is running. A Space on its way there (its
    agent reconnecting after a broker restart, sshd starting) is waited for, up to READY_WAIT
    seconds and woken by the hub, not polled; one that cannot be (stopped, sshd failing) is
    refused at once, with the reason."""
    deadline = time.monotonic() + READY_WAIT
    while True:
        space = await access.get_visible(ctx, user, space_id)
        refused = readiness.refusal(spaces.to_wire(space, user, None))
        if refused is not None:
            raise Problem(409, *refused)
        connected = ctx.hub.connected(space.id)
        if connected and space.state == "running":
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


async def _agent_answer(ctx: Context, user: UserRecord, tunnel: Tunnel) -> WebSocket:
    """The agent's end of the tunnel. If the Space's health changes meanwhile (the agent could
    not reach sshd, and says why), the person hears that at once rather than after the timeout."""
    deadline = time.monotonic() + AGENT_ANSWER_TIMEOUT
    while True:
        left = deadline - time.monotonic()
        changed = asyncio.ensure_future(ctx.hub.wait_changed(tunnel.space_id, max(left, 0)))
        await asyncio.wait((tunnel.agent, changed), return_when=asyncio.FIRST_COMPLETED)
        changed.cancel()
        if tunnel.agent.done():
            return tunnel.agent.result()
        space = await access.get_visible(ctx, user, tunnel.space_id)
        refused = readiness.refusal(spaces.to_wire(space, user, None))
        if refused is not None:
            raise Problem(409, *refused)
        if time.monotonic() >= deadline:
            raise Problem(
                504,
                f'The container of "{space.name}" did not answer.',
                "Its agent may be restarting; try again in a few seconds.",
                "agent_timeout",
            )


def _host_keys(space: SpaceRecord) -> str:
    """The Space's host keys as its container reported them (checked when they were stored)."""
    facts = msgspec.json.decode(space.facts, type=m.ContainerFacts) if space.facts else m.ContainerFacts()
    return ", ".join(facts.host_keys)


async def agent_tunnel(ws: WebSocket) -> None:
    """The agent's end of a tunnel: hand the socket to the waiting person's handler."""
    ctx: Context = ws.app.state.ctx
    try:
        space = await agents.authenticate_agent(ctx, bearer(ws))
        tunnel = ctx.hub.tunnels.get(ws.path_params["tunnel_id"])
        if tunnel is None or tunnel.space_id != space.id or tunnel.agent.done():
            raise Problem(404, "That tunnel was not found.", "It may have been closed already.", "not_found")
    except (Problem, StoreUnavailable) as exc:
        await deny(ws, as_problem(exc))
        return
    await ws.accept()
    tunnel.agent.set_result(ws)
    await tunnel.done.wait()  # the person's handler splices; this connection lives until it is done


async def splice(tunnel: Tunnel, client: WebSocket, agent: WebSocket) -> None:
    async def pump(src: WebSocket, dst: WebSocket, inbound: bool) -> int:
        """Copy until `src` disconnects; return its close code."""
        while True:
            message = await src.receive()
            if message["type"] == "websocket.disconnect":
                return int(message.get("code", 1000))
            data = message.get("bytes") or (message.get("text") or "").encode()
            await dst.send_bytes(data)
            if inbound:
                tunnel.bytes_in += len(data)
            else:
                tunnel.bytes_out += len(data)

    inbound = asyncio.create_task(pump(client, agent, True))
    outbound = asyncio.create_task(pump(agent, client, False))
    done, pending = await asyncio.wait((inbound, outbound), return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    for task in (inbound, outbound):
        with contextlib.suppress(BaseException):
            await task
    agent_gone = (
        outbound in done and not outbound.cancelled() and outbound.exception() is None and outbound.result() != 1000
    )
    if agent_gone and not tunnel.close_reason:
        # The container's side vanished without closing (a normal logout closes with 1000): say so.
        tunnel.close_reason = "The connection to the container was lost (its agent or sshd stopped)."
        with contextlib.suppress(Exception):
            await client.close(code=4502, reason=tunnel.close_reason)
    for side in (client, agent):
        with contextlib.suppress(Exception):
            await side.close()


SERVICE_RESTART = 1012  # RFC 6455 close code registry: "Service Restart"
RESTART_REASON = "The broker is restarting; connect again in a few seconds."


async def close_all(ctx: Context, timeout: float = 2.0) -> None:
    """On shutdown: end every tunnel and agent channel with 1012 and a reason, so people read a
    sentence and agents reconnect at once (they know the broker is coming back)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ctx.hub.close_all(SERVICE_RESTART, RESTART_REASON, "the broker is restarting"), timeout)


ROUTES = [
    WebSocketRoute(ep.AGENT_CONNECT, agent_connect),
    WebSocketRoute(ep.AGENT_TUNNEL, agent_tunnel),
    WebSocketRoute(ep.SPACE_TUNNEL, space_tunnel),
]
