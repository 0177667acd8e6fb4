"""The relay's WebSocket routes: the agent's control channel, the agent's end of each stream, and
a person's end of a stream (SSH, a terminal, a port), each a thin caller of broker.streams.

WebSockets carry bytes as binary frames, compression off (on random bytes it costs ~25x).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from broker import accounts, agents, bus, credentials, events, metrics, peering, snapshots, streams, terminals
from broker.context import Context
from broker.errors import Problem
from broker.http import as_problem, bearer, json_response, problem_response
from broker.hub import AgentLink, Claim
from broker.links import Closed, WebSocketLink
from broker.store import SpaceRecord, StoreError, StoreUnavailable, UserRecord
from broker.web import auth
from pair.api import endpoints as ep
from pair.api import fields as wire_fields
from pair.api import models as m
from pair.api import terminal as tp
from pair.api.closecodes import CloseCode, for_status
from pair.printable import printable

_agent_messages = msgspec.json.Decoder(m.AgentMessage)


async def deny(ws: WebSocket, problem: Problem) -> None:
    """Refuse the upgrade with our JSON error body where the server allows it."""
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(problem_response(problem))
    else:
        await ws.close(code=CloseCode.POLICY, reason=problem.message[:120])


# -- the agent's control channel ----------------------------------------------------------------


async def agent_connect(ws: WebSocket) -> None:
    """The agent's control channel: authenticated once, here; afterwards the bus tells it when
    the credential dies (`events.credential_changed`). Heartbeats come in and are answered;
    commands for this agent (bus.agent_channel) go out while this process holds the channel."""
    ctx: Context = ws.app.ctx
    credential = bearer(ws)
    try:
        space = await agents.authenticate_agent(ctx, credential)
    except (Problem, StoreUnavailable) as exc:
        await deny(ws, as_problem(exc))
        return
    await ws.accept()
    link = AgentLink(space.id, WebSocketLink(ws), credentials.digest(credential))
    replaced = ctx.hub.attach(link)
    metrics.CONNECTED_AGENTS.inc()
    if replaced is not None:
        await replaced.link.close(CloseCode.REPLACED, "replaced by a newer connection")
    unsubscribe = await ctx.bus.subscribe(bus.agent_channel(space.id), functools.partial(_command, ctx, link))
    link.hears_commands = True  # a stream asked for from now on reaches it
    try:
        if ctx.replica is not None:  # the other replicas send its commands here and count it connected
            await ctx.store.hold_agent_channel(space.id, ctx.replica.id, ctx.now())
        await events.space_changed(ctx, space.id)  # streams waiting for it on any replica go on
        while True:
            frame = await link.link.receive()
            if isinstance(frame, Closed):
                return
            try:
                message = _agent_messages.decode(frame)
            except msgspec.DecodeError as exc:  # a ValidationError too: words of ours, not the container's text
                await link.link.close(CloseCode.BAD_DATA, f"bad message: {_why(exc, frame)}")
                return
            if isinstance(message, m.StreamRefused):
                await events.stream_refused(ctx, message.stream_id, _refusal(message))
                continue
            beat = message.heartbeat
            if not link.introduced.is_set():
                link.streams = frozenset(beat.streams or ())
                link.introduced.set()
            reported = (link.terminals, link.listening)
            if beat.listening is not None:
                link.listening = tuple(beat.listening)
            if beat.terminals is not None:
                link.terminals = beat.terminals
            if beat.roles:
                await terminals.roles_changed(ctx, space.id, beat.roles)
            if ctx.replica is not None and (link.terminals, link.listening) != reported:
                # the other replicas read it from the database (Context.agent_report)
                await ctx.store.report_agent(space.id, ctx.replica.id, *link.report())
            current = await ctx.store.space(space.id)  # its state now (not who it is: that was settled above)
            if current is None or current.deleted_at is not None:
                await link.link.close(CloseCode.CREDENTIAL_DEAD, "the Space was deleted")
                return
            reply = await agents.heartbeat(ctx, current, beat)
            await link.send(m.ReplyMessage(reply=reply))
    except WebSocketDisconnect:  # the agent went while it was being answered (it stopped, say): closed all the same
        pass
    except (Problem, StoreUnavailable) as exc:  # the agent reconnects after UNAVAILABLE
        problem = as_problem(exc)
        await link.link.close(for_status(problem.status), problem.message)
    finally:
        await unsubscribe()
        ctx.hub.detach(link)
        metrics.CONNECTED_AGENTS.dec()
        if ctx.replica is not None and not ctx.hub.connected(space.id):
            with contextlib.suppress(StoreError):  # a dead replica's records count for nothing anyway
                await ctx.store.release_agent_channel(space.id, ctx.replica.id)


async def _command(ctx: Context, link: AgentLink, payload: bytes) -> None:
    """An `events.AgentCommand` for the agent on `link`, from the bus."""
    if not ctx.hub.holds(link):
        return  # a newer channel of the same agent has it
    command = events.agent_commands.decode(payload)
    if isinstance(command, events.Recheck):
        if await ctx.store.space_by_credential(link.credential_digest) is None:
            await link.link.close(CloseCode.CREDENTIAL_DEAD, command.reason)
        return
    await link.wait_introduced()
    if isinstance(command, events.Push):
        space = await ctx.store.space(link.space_id)
        if space is not None and space.deleted_at is None:
            reply = await snapshots.reply_for(ctx, space, start_ssh=command.start_ssh, fresh=True)
            await link.send(m.ReplyMessage(reply=reply))
    elif isinstance(command, events.OpenStream):
        await _open(ctx, link, command)
    elif "pty" in link.streams:  # EndTerminals; an agent without terminals has none to end
        await link.send(m.EndTerminals(emails=command.emails, reason=command.reason, kicked=command.kicked))


async def _open(ctx: Context, link: AgentLink, command: events.OpenStream) -> None:
    """Ask the agent for a stream in the words it understands: `stream`, or `tunnel` (SSH only)
    for an agent that predates streams (issue 13: an agent one release older keeps working)."""
    kind = command.target.__struct_config__.tag  # ssh, pty, tcp: as agents list them
    if kind in link.streams:
        await link.send(m.StreamRequest(stream_id=command.stream_id, target=command.target))
    elif kind == "ssh":
        await link.send(m.TunnelRequest(tunnel_id=command.stream_id))
    else:
        what = "terminals" if kind == "pty" else "ports"
        problem = Problem(
            501,
            f"The pair agent in this Space's container is too old for {what}.",
            "Update pair in the container (run its install.sh again, or rebuild it); SSH works meanwhile.",
            "agent_outdated",
        )
        await events.stream_refused(ctx, command.stream_id, problem)


# StreamRefused.code → the HTTP status, hint and error code the person is answered with
REFUSALS: dict[m.RefusalCode, tuple[int, str, m.ErrorCode]] = {
    "not_allowed": (
        403,
        "pair reaches only ports on 127.0.0.1 in the container, 1–65535, other than its own.",
        "target_not_allowed",
    ),
    "unreachable": (502, "Start it in the container, or check the port.", "target_unreachable"),
}


def _why(exc: msgspec.DecodeError, frame: str | bytes) -> str:
    """Why the agent's message `frame` was refused, in one sentence: the field's grammar, the
    value escaped and cut (pair.api.fields.message_refusal); the close frame cuts it to 123 bytes."""
    return wire_fields.message_refusal(m.AgentMessage, exc, frame)


def _refusal(message: m.StreamRefused) -> Problem:
    """The Problem a person's stream is refused with when the agent would not open it."""
    status, hint, code = REFUSALS[message.code]
    return Problem(status, message.message, hint, code)


# -- the agent's end of a stream ----------------------------------------------------------------


async def agent_stream(ws: WebSocket) -> None:
    """The agent's end of a stream: hand the socket to the waiting person's side, which splices;
    among replicas, when the person is on another one, carry it there once that one claims it
    (broker.peering). Served at AGENT_STREAM and, for agents that predate streams, AGENT_TUNNEL."""
    ctx: Context = ws.app.ctx
    stream_id = ws.path_params.get("stream_id") or ws.path_params["tunnel_id"]
    link = WebSocketLink(ws)
    claim: Claim | None = None
    try:
        space = await agents.authenticate_agent(ctx, bearer(ws))
        if ctx.replica is None or streams.waits_here(ctx, space.id, stream_id):
            stream = streams.agent_dialed(ctx, space.id, stream_id, link)
        else:
            claim = await peering.wait_claim(ctx, space.id, stream_id)
            if claim is None:
                raise streams.stream_not_found()
    except (Problem, StoreUnavailable) as exc:
        await deny(ws, as_problem(exc))
        return
    if claim is not None:
        try:
            await ws.accept()
            await streams.relay_leg(ctx, stream_id, claim, link)
        finally:  # the agent gone before its accept, say: the claiming replica hears it at once
            await claim.link.close(CloseCode.CONTAINER_LOST, streams.CONTAINER_LOST)
            claim.done.set()
        return
    await ws.accept()
    await stream.done.wait()  # the person's side splices; this connection lives until it is done


async def peer_stream(ws: WebSocket) -> None:
    """Another replica claims the agent's end of one of its streams that dialed this one
    (broker.peering): only a replica proving the replicas' secret, only for an agent connection
    parked here for that stream and Space; everything else is refused."""
    ctx: Context = ws.app.ctx
    replica = ctx.replica
    if replica is None:
        await deny(ws, Problem(404, "Not found.", "", "not_found"))
        return
    if not replica.admits(ws.headers.get("authorization")):
        await deny(ws, Problem(403, "Only another replica of this broker may do that.", "", "forbidden"))
        return
    try:
        leg = peering.decode_leg(ws.headers.get(peering.LEG_HEADER, ""))
    except ValueError as exc:
        await deny(ws, Problem(422, str(exc), "", "invalid"))
        return
    waiting = peering.parked(ctx, ws.path_params["stream_id"], leg)
    if waiting is None:
        await deny(ws, streams.stream_not_found())
        return
    await ws.accept()
    claim = Claim(WebSocketLink(ws), leg)
    if waiting.done():  # the agent's connection stopped waiting meanwhile
        await claim.link.close(CloseCode.INTERNAL_ERROR, "the container's connection went away")
        return
    waiting.set_result(claim)
    await claim.done.wait()  # the agent's handler splices; this connection lives until it is done


# -- a person's end of a stream -------------------------------------------------------------------

TargetFor = Callable[[WebSocket, UserRecord], m.StreamTarget]
HeadersFor = Callable[[SpaceRecord], list[tuple[bytes, bytes]]]
Authenticate = Callable[[WebSocket], Awaitable[UserRecord]]


async def bearer_person(ws: WebSocket) -> UserRecord:
    """The person a CLI's stream is for: its session as a bearer token (a browser cannot send
    one on a WebSocket, so no other site can open these for a signed-in browser)."""
    _, user = await accounts.authenticate(ws.app.ctx, bearer(ws))
    return user


async def _person(
    ws: WebSocket,
    kind: m.StreamKind,
    target_for: TargetFor,
    headers_for: HeadersFor = lambda _space: [],
    authenticate: Authenticate = bearer_person,
) -> None:
    """A person's stream: authenticate (their session), name the target, wait until the Space
    takes it, open it, accept (with `headers_for(space)`), splice. Every refusal before that is
    an HTTP answer with our JSON error body; after it, a close code and a sentence. Terminal
    streams are bounded by their protocol's message sizes, and a grant is checked as it passes
    (broker.terminals.refusal)."""
    ctx: Context = ws.app.ctx
    accepted = False
    try:
        user = await authenticate(ws)
        target = target_for(ws, user)
        space = await streams.ready(ctx, user, ws.path_params["space_id"], kind)
        client = f"{ws.client.host}:{ws.client.port}" if ws.client else ""
        async with streams.open_stream(ctx, space, user, target, client_address=client) as stream:
            await ws.accept(headers=headers_for(space))
            accepted = True
            if kind == "terminal":
                await streams.splice(stream, WebSocketLink(ws), limits=streams.terminal_limits(ctx, space.id))
            else:
                await streams.splice(stream, WebSocketLink(ws))
    except (Problem, StoreUnavailable) as exc:
        if not accepted:
            await deny(ws, as_problem(exc))


def _host_keys_header(space: SpaceRecord) -> list[tuple[bytes, bytes]]:
    """ep.HOST_KEYS_HEADER: the Space's host keys as its container reported them (checked when
    they were stored), so the proxy can re-pin them before ssh checks the server's key."""
    facts = msgspec.json.decode(space.facts, type=m.ContainerFacts) if space.facts else m.ContainerFacts()
    return [(ep.HOST_KEYS_HEADER.encode(), ", ".join(facts.host_keys).encode())]


async def space_ssh(ws: WebSocket) -> None:
    """A person's SSH stream (`pair spaces proxy`, ssh's ProxyCommand); its acceptance carries
    the Space's host keys (ep.HOST_KEYS_HEADER)."""
    await _person(ws, "ssh", lambda _ws, _user: m.SshTarget(), _host_keys_header)


def _terminal(ws: WebSocket, user: UserRecord) -> m.PtyTarget:
    """`?cols=C&rows=R` opens a terminal started by `user`; `?join=ID[&read_only=true][&cols&rows]`
    joins one as `user` (never as an email the query names); `&control=true` only to send it
    control messages (`tp.JoinTerminal.control`). Raises Problem 422 otherwise."""
    query = ws.query_params
    fields: dict[str, str] = {name: query[name] for name in ("cols", "rows") if name in query}
    kind: type[tp.OpenTerminal] | type[tp.JoinTerminal] = tp.OpenTerminal
    if "join" in query:
        kind = tp.JoinTerminal
        fields.update(terminal_id=query["join"], read_only=query.get("read_only", "false"))
        fields.update(control=query.get("control", "false"))
    asked = {**fields, "email": user.email}
    try:
        terminal = msgspec.convert(asked, kind, strict=False)
    except msgspec.ValidationError as exc:
        said = wire_fields.refusal(kind, exc, asked)  # a query parameter's grammar, in its words
        if said is not None:
            raise Problem(422, said.message, said.hint, "invalid") from exc
        raise Problem(
            422,
            f"That is not a terminal request: {printable(str(exc))}.",
            "Open one with ?cols=C&rows=R, or join one with ?join=TERMINAL_ID (and read_only=true).",
            "invalid",
        ) from exc
    return m.PtyTarget(terminal=terminal)


async def space_terminal(ws: WebSocket) -> None:
    """A person's terminal stream (pair.api.terminal's protocol), from the CLI."""
    await _person(ws, "terminal", _terminal)


async def web_terminal(ws: WebSocket) -> None:
    """The terminal page's stream: the same, for the browser's cookie session, from the broker's
    own origin only (broker.web.auth.websocket_person)."""
    await _person(ws, "terminal", _terminal, authenticate=auth.websocket_person)


def _port(ws: WebSocket, _user: UserRecord) -> m.TcpTarget:
    """The path's port, 1–65535 in decimal without leading zeros. Raises Problem 422. Which
    ports the agent will dial is its allow-list's decision (pair.container.streams)."""
    text = ws.path_params["port"]
    if not (text.isascii() and text.isdigit() and text[0] != "0" and int(text) <= 65535):
        raise Problem(422, f"{text[:12]!r} is not a TCP port.", "A port is a number from 1 to 65535.", "invalid")
    return m.TcpTarget(port=int(text))


async def space_port(ws: WebSocket) -> None:
    """A person's TCP stream to 127.0.0.1:PORT in the container (binary frames both ways)."""
    await _person(ws, "port", _port)


ROUTES = [
    WebSocketRoute(ep.AGENT_CONNECT, agent_connect),
    WebSocketRoute(ep.AGENT_STREAM, agent_stream),
    WebSocketRoute(ep.AGENT_TUNNEL, agent_stream),
    WebSocketRoute(ep.SPACE_TUNNEL, space_ssh),
    WebSocketRoute(ep.SPACE_TERMINAL, space_terminal),
    WebSocketRoute(ep.SPACE_PORT, space_port),
    WebSocketRoute(ep.WEB_TERMINAL, web_terminal),
]


async def whoami(request: Request) -> Response:
    """Which replica answers here (its id), to a replica proving the replicas' secret: a starting
    replica checks that its own --replica-address reaches itself (broker.peering.check_address)."""
    ctx: Context = request.app.ctx
    replica = ctx.replica
    if replica is None:
        return problem_response(Problem(404, "Not found.", "", "not_found"))
    if not replica.admits(request.headers.get("authorization")):
        return problem_response(Problem(403, "Only another replica of this broker may do that.", "", "forbidden"))
    return json_response(200, msgspec.json.encode({"id": replica.id}))


# Between replicas only (broker.peering): not part of the API, so not in pair.api.endpoints nor
# /openapi.json; a load balancer need not (and should not) pass /internal/ from outside.
INTERNAL_ROUTES = [WebSocketRoute(peering.PEER_STREAM, peer_stream)]
INTERNAL_HTTP_ROUTES = [Route(peering.WHOAMI, whoami, methods=["GET"])]
