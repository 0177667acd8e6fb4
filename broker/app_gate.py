"""The app side of the broker: every request whose Host lies under the apps domain is a shared
port's, and never reaches the broker's own routes, pages or cookies (docs/architecture.md,
"Shared ports: the app proxy").

For each request: the address → the shared port and its Space (404 page if none) → the visitor
(the app origin's own cookie, broker.apps.auth; never the broker session) → `access.may_open_port`
(else a sign-in through the broker's origin, or a 403 page) → `broker.apps.forward` over a stream
the agent opens to 127.0.0.1:PORT in the container, one per HTTP request or WebSocket.

Every such stream is a `broker.streams` stream of kind `port`, named by the visitor and the
port's address, so `events.end_streams` (unshare, kick, delete, down, a level narrowed) ends it:
the forward is cancelled and an open WebSocket closes with 1008 and the sentence.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal
from urllib.parse import parse_qs

from broker import access, metrics, ports, streams
from broker.apps import auth, origins
from broker.apps.forward import forward
from broker.apps.forwarding import ProxyOptions, header, public_host, public_scheme
from broker.apps.hosts import AppsDomain, host_name
from broker.apps.proxy import send_error
from broker.apps.streams import ByteStream, Target, TargetUnavailable
from broker.context import Context
from broker.errors import Problem
from broker.hub import Stream
from broker.links import Closed
from broker.store import PortRecord, SpaceRecord, StoreUnavailable, UserRecord
from broker.web import security
from pair.api import models as m
from pair.api.closecodes import CloseCode

Scope = dict[str, Any]
SESSION_CHECK = 1.0  # seconds between checks that an open connection's broker session is live
SESSION_ENDED = "Your pair session ended (signed out, or a new auth key). Sign in again to open this app."
OPTIONS = ProxyOptions(
    credential_cookies=frozenset(
        prefix + name
        for name in (security.SESSION_COOKIE, security.SIGNIN_COOKIE, security.FLASH_COOKIE)
        for prefix in ("", security.HOST_PREFIX)
    )
    | auth.COOKIE_NAMES,
    authorization_prefixes=("pair_",),
)


class AppsGate:
    """ASGI middleware in front of the broker: requests for hosts under the apps domain are the
    app proxy's; everything else goes on to the broker."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            ctx: Context = scope["app"].ctx
            domain = ports.apps_domain(ctx)
            side = host_side(domain, public_host(scope))
            if side is None:  # decided on the parsed name, or not at all
                await _refuse(scope, receive, send, 400, "Bad request", "The request's Host header is malformed.")
                return
            if side == "apps":
                assert domain is not None
                scope["route"] = metrics.APPS  # counted as the app proxy's, not as unmatched
                await serve(ctx, domain, scope, receive, send)
                return
        await self.app(scope, receive, send)


@functools.lru_cache(maxsize=4096)
def host_side(domain: AppsDomain | None, host: bytes) -> Literal["apps", "broker"] | None:
    """Which side answers a request with this Host header value: the app proxy (`apps`, a host
    under `domain`), the broker, or neither (None: malformed, answered 400). Cached: every request
    asks, nearly always with the same few values, and parsing costs microseconds (a scanner's
    random hosts only cycle the cache)."""
    text = host.decode("latin-1")
    if host_name(text) is None:
        return None
    return "apps" if domain is not None and domain.covers(text) else "broker"


async def serve(ctx: Context, domain: AppsDomain, scope: Scope, receive: Any, send: Any) -> None:
    """Answer one request or WebSocket for an app address (see the module docstring)."""
    address = domain.parse_host(public_host(scope).decode("latin-1"))
    found = await ports.find(ctx, address) if address is not None else None
    if address is None or found is None:
        await _refuse(
            scope,
            receive,
            send,
            404,
            "Nothing is shared here",
            "No port is shared at this address: it may have been unshared, or the address is mistyped.",
        )
        return
    record, space = found
    host = domain.host(address)
    is_https = ports.secure(ctx)
    if record.level != "public" and _foreign(ctx, domain, scope, record.address, is_https):
        await _refuse(scope, receive, send, 403, "Refused: not from this app", origins.REFUSAL)
        return
    app_cookie, state_cookie = auth.cookie_names(secure=is_https)
    cookies = (header(scope["headers"], b"cookie") or b"").decode("latin-1")
    if scope["type"] == "http" and scope["path"] == auth.AUTH_PATH:
        await _redeem(ctx, scope, send, host, auth.read_cookie(cookies, state_cookie), is_https)
        return
    user, session_id = await _visitor(ctx, auth.read_cookie(cookies, app_cookie), host)
    if not await access.may_open_port(ctx, user, space, record.level):
        if user is None and scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            await _to_signin(ctx, scope, send, host, state_cookie, is_https)
        elif user is None:
            await _refuse(
                scope,
                receive,
                send,
                401,
                "Sign in first",
                "Open this app's address in your browser to sign in through pair.",
            )
        else:
            detail = (
                f'Port {record.port} of "{space.name}" is open to {ports.LEVEL_WORDS[record.level]}, '
                f"and you are signed in as {user.email}. Ask {space.owner_email} for access."
            )
            await _refuse(scope, receive, send, 403, "You cannot open this app", detail)
        return
    await _forward(ctx, scope, receive, send, record, space, user, session_id if record.level != "public" else "")


def _foreign(ctx: Context, domain: AppsDomain, scope: Scope, address: str, is_https: bool) -> bool:
    """broker.apps.origins' decision for this request; the app's own origin is its public one
    (the broker's settings) or the scheme and Host the request itself names."""
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
    scheme = "https" if is_https else public_scheme(scope)
    own = {ports.app_origin(ctx, domain, address).lower(), f"{scheme}://{public_host(scope).decode('latin-1')}".lower()}
    method = "GET" if scope["type"] == "websocket" else str(scope["method"])
    return origins.foreign_request(headers, method=method, websocket=scope["type"] == "websocket", own_origins=own)


async def _refuse(scope: Scope, receive: Any, send: Any, status: int, title: str, detail: str) -> None:
    if scope["type"] == "websocket":
        await receive()  # websocket.connect, before the denial
    await send_error(send, scope, status, title, detail)


async def _visitor(ctx: Context, value: str, host: str) -> tuple[UserRecord | None, str]:
    """The user an app cookie names for this host and the broker session it came from, or
    (None, "") if there is no cookie, it is not a valid one, or that session has ended (signed
    out, a new auth key, the user removed): the app credential lives no longer than the broker
    session that gave it (`Store.session_live`, memoized, so asking on every request is cheap)."""
    if not value:
        return None, ""
    try:
        grant = ports.credentials(ctx).open_cookie(value, host=host, now=ctx.now())
    except auth.CredentialRejected:
        return None, ""
    if not grant.session_id or not await ctx.store.session_live(grant.session_id, grant.user_id, ctx.now()):
        return None, ""
    user = await ctx.store.user(grant.user_id)
    return (user, grant.session_id) if user is not None else (None, "")


async def _session_ends(ctx: Context, user_id: str, session_id: str) -> str:
    """Return when broker session `session_id` ends (checked every SESSION_CHECK seconds, so an
    open WebSocket of a signed-out person closes within 2 s, whichever process revoked it)."""
    while True:
        with contextlib.suppress(StoreUnavailable):  # a store hiccup is not a sign-out
            if not await ctx.store.session_live(session_id, user_id, ctx.now()):
                return SESSION_ENDED
        await asyncio.sleep(SESSION_CHECK)


async def _to_signin(ctx: Context, scope: Scope, send: Any, host: str, state_cookie: str, is_https: bool) -> None:
    """Step 1 of broker.apps.auth: a state cookie on this origin, then the broker's sign-in."""
    state, digest = auth.new_state()
    path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"")
    next_path = (path + (b"?" + query if query else b"")).decode("latin-1")
    url = auth.signin_url(ctx.settings.url, ports.SIGNIN_PATH, host=host, state_digest=digest, next_path=next_path)
    headers = [
        (b"location", url.encode()),
        (b"set-cookie", auth.set_cookie(state_cookie, state, max_age=auth.STATE_TTL, secure=is_https)),
        (b"cache-control", b"no-store"),
        (b"referrer-policy", b"no-referrer"),
        (b"content-length", b"0"),
    ]
    await send({"type": "http.response.start", "status": 302, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def _redeem(ctx: Context, scope: Scope, send: Any, host: str, state: str, is_https: bool) -> None:
    """Step 3: `/.pair/auth?ticket=T` sets the app cookie (the app never sees this path)."""
    ticket = (parse_qs(scope.get("query_string", b"").decode("latin-1")).get("ticket") or [""])[0]
    now = ctx.now()
    try:
        grant = await auth.redeem(
            ports.credentials(ctx), ports.StoreTickets(ctx), ticket=ticket, host=host, state=state, now=now
        )
    except auth.CredentialRejected:
        detail = (
            "A sign-in link works once, within a minute, in the browser that asked for it. "
            "Open the app's address again to sign in."
        )
        await send_error(send, scope, 400, "This sign-in link did not work", detail)
        return
    headers = auth.signed_in_headers(
        ports.credentials(ctx), grant, now=now, ttl=ctx.settings.web_session_ttl, secure=is_https
    )
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


# -- forwarding over the agent's streams --------------------------------------------------------


class LinkStream:
    """broker.apps.streams.ByteStream over the agent's end of a stream (binary frames); closing
    it leaves `streams.open_stream`, which closes the link and the log row."""

    def __init__(self, stream: Stream, opened: AbstractAsyncContextManager[Stream]) -> None:
        self._stream = stream
        self._opened = opened
        self._link = stream.agent.result()
        self._pending = b""
        self._ended = False
        self._closed = False

    async def read(self, max_bytes: int) -> bytes:
        if not self._pending and not self._ended:
            try:
                frame = await self._link.receive()
            except Exception as exc:  # the socket went away under us
                raise ConnectionResetError(str(exc)) from exc
            if isinstance(frame, Closed):
                self._ended = True
            else:
                self._pending = frame if isinstance(frame, bytes) else frame.encode()
                self._stream.carried(len(self._pending), inbound=False)
        data, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
        return data

    async def write(self, data: bytes) -> None:
        if self._ended or self._stream.close_reason:
            raise ConnectionResetError("the stream has ended")
        try:
            await self._link.send_bytes(data)
        except Exception as exc:
            raise ConnectionResetError(str(exc)) from exc
        self._stream.carried(len(data), inbound=True)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._opened.__aexit__(None, None, None)


async def _forward(
    ctx: Context,
    scope: Scope,
    receive: Any,
    send: Any,
    record: PortRecord,
    space: SpaceRecord,
    user: UserRecord | None,
    session_id: str,
) -> None:
    """Forward through a stream per request; end it when `end_streams` ends one of its streams,
    or when broker session `session_id` (if any) ends."""
    person = user or ports.ANONYMOUS
    client = scope.get("client")
    client_address = f"{client[0]}:{client[1]}" if client else ""
    opened: asyncio.Queue[Stream] = asyncio.Queue()

    async def look() -> SpaceRecord:
        return await ports.reach(ctx, user, space.id, record.address)

    async def open_stream() -> ByteStream:
        try:
            ready = await streams.ready(ctx, person, space.id, "port", look=look)
            target = m.TcpTarget(port=record.port, shared=True)  # the owner shared it on purpose
            manager = streams.open_stream(
                ctx, ready, person, target, client_address=client_address, look=look, app=record.address
            )
            stream = await manager.__aenter__()
        except Problem as exc:
            raise TargetUnavailable(exc.message) from exc
        except StoreUnavailable as exc:
            raise TargetUnavailable("The broker cannot log this connection right now; try again soon.") from exc
        opened.put_nowait(stream)
        state.streams.append(stream)
        return LinkStream(stream, manager)

    state = _Progress(send)
    task = asyncio.create_task(forward(scope, receive, state.send, Target(record.port, open_stream), OPTIONS))
    ended = asyncio.create_task(_first_ending(opened))
    endings = [ended]
    if user is not None and session_id:
        endings.append(asyncio.create_task(_session_ends(ctx, user.id, session_id)))
    try:
        await asyncio.wait({task, *endings}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for ending in endings:
            ending.cancel()
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    reason = next((e.result() for e in endings if e.done() and not e.cancelled()), "")
    if reason:
        await state.revoked(scope, reason)


async def _first_ending(opened: asyncio.Queue[Stream]) -> str:
    """The reason of the first of these streams that `Stream.end` ends."""
    waiters: list[asyncio.Task[Any]] = []
    try:
        getter = asyncio.create_task(opened.get())
        waiters.append(getter)
        watched: dict[asyncio.Task[Any], Stream] = {}
        while True:
            done, _ = await asyncio.wait([getter, *watched], return_when=asyncio.FIRST_COMPLETED)
            for finished in done:
                if finished is getter:
                    stream = getter.result()
                    watcher = asyncio.create_task(stream.ending.wait())
                    watched[watcher] = stream
                    waiters.append(watcher)
                    getter = asyncio.create_task(opened.get())
                    waiters.append(getter)
                else:
                    return watched[finished].close_reason
    finally:
        for waiter in waiters:
            waiter.cancel()


class _Progress:
    """What the forward has sent the browser, so a revocation can end it properly."""

    def __init__(self, send: Any) -> None:
        self._send = send
        self.streams: list[Stream] = []
        self.started = False  # http.response.start or websocket.accept sent
        self.finished = False  # the response's last body part, or websocket.close, sent

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        ended = next((s.close_reason for s in self.streams if s.ending.is_set()), "")
        if kind == "websocket.close" and ended:  # the proxy saw the stream go first: say why it went
            message = {"type": kind, "code": CloseCode.POLICY, "reason": ended[:120]}
        if kind in ("http.response.start", "websocket.accept", "websocket.http.response.start"):
            self.started = True
        elif kind == "websocket.close" or (kind == "http.response.body" and not message.get("more_body")):
            self.finished = True
        await self._send(message)

    async def revoked(self, scope: Scope, reason: str) -> None:
        if self.finished:
            return
        with contextlib.suppress(Exception):  # the browser may have left meanwhile
            if scope["type"] == "websocket" and self.started:
                await self._send({"type": "websocket.close", "code": CloseCode.POLICY, "reason": reason[:120]})
            elif not self.started:
                await send_error(self._send, scope, 403, "Your access to this app ended", reason)
            # an HTTP response under way is left unfinished: the server drops the connection
