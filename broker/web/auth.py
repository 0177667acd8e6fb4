"""Who is signed in to the web page, and the one-time links `pair web` opens.

A web session is an ordinary session row of kind "web" (created by `accounts.login` or
`accounts.start_session`), carried in an HttpOnly cookie. A CLI session token in the cookie is
not accepted, and the web cookie is never readable by page scripts.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket

from broker import accounts, credentials
from broker.context import Context, timestamp
from broker.errors import Problem
from broker.http import Call
from broker.store import SessionRecord, UserRecord
from broker.web import security
from pair.api import models as m

KIND = "web"
LINK_PREFIX = credentials.WEB_LINK
LINK_TTL = 300  # a one-time link is good for five minutes
LINK_PATH = "/web/link/"


@dataclass(frozen=True)
class WebSession:
    token: str
    session: SessionRecord
    user: UserRecord

    @property
    def csrf(self) -> str:
        return security.csrf_token(self.token)


async def current(request: HTTPConnection) -> WebSession | None:
    ctx: Context = request.app.ctx
    token = security.read_cookie(request, security.SESSION_COOKIE)
    if not token:
        return None
    try:
        session, user = await accounts.authenticate(ctx, token)
    except Problem:
        return None
    if session.kind != KIND:
        return None
    return WebSession(token, session, user)


def client_label(request: HTTPConnection) -> str:
    return "web: " + request.headers.get("user-agent", "")[:190]


# -- the terminal page's WebSocket ----------------------------------------------------------

DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str:
    """The origin (RFC 6454 §6.2 serialization: scheme://host[:port], lower case, no default
    port, no path) of an absolute http(s) URL, e.g. the broker's public URL."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # not a port: no origin this broker has
        return ""
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != DEFAULT_PORTS.get(scheme) else "")


def check_origin(headers: Mapping[str, str], public_url: str) -> None:
    """Refuse a WebSocket upgrade (its `headers`) whose `Origin` is not the broker's public origin: cookies ride
    on cross-site WebSocket upgrades (SameSite=Lax does not stop them), so without this any site
    a signed-in person visits could open their terminals (cross-site WebSocket hijacking). A
    missing Origin (not a browser) is refused too: only the page uses this route. Raises
    Problem 403 (`bad_origin`)."""
    sent = headers.get("origin", "")
    if not sent or origin_of(sent) in ("", "://") or origin_of(sent) != origin_of(public_url):
        raise Problem(
            403,
            "This terminal can be opened only from the broker's own web page.",
            f"Open it from the Spaces page at {public_url}.",
            "bad_origin",
        )


async def websocket_person(ws: WebSocket) -> UserRecord:
    """Whom the terminal page's WebSocket is for: the broker's own origin (check_origin), then
    the web session cookie, as for every page. Raises Problem (403 bad_origin, 401)."""
    ctx: Context = ws.app.ctx
    check_origin(ws.headers, ctx.settings.url)
    web = await current(ws)
    if web is None:
        raise Problem(401, "You are not signed in, or your session has expired.", "Sign in again.", "unauthenticated")
    return web.user


# -- one-time links -------------------------------------------------------------------------


async def create_link(ctx: Context, user: UserRecord) -> m.WebLink:
    token = LINK_PREFIX + secrets.token_urlsafe(32)
    now = ctx.now()
    await ctx.store.add_web_link(credentials.digest(token), user.id, now, now + LINK_TTL)
    await ctx.store.audit(now, user.email, "web.link", user.email)
    return m.WebLink(
        url=f"{ctx.settings.url}{LINK_PATH}{token}", expires_at=timestamp(now + LINK_TTL), ttl_seconds=LINK_TTL
    )


async def redeem_link(ctx: Context, token: str, client: str) -> tuple[str, SessionRecord, UserRecord]:
    user = None
    if token.startswith(LINK_PREFIX) and len(token) < 100:
        user = await ctx.store.redeem_web_link(credentials.digest(token), ctx.now())
    if user is None:
        raise Problem(
            400,
            "This sign-in link has expired or was already used.",
            "A link from `pair web` works once, within five minutes. Run `pair web` again, or sign in with "
            "your email and auth key.",
            "link_invalid",
        )
    session_token, session = await accounts.start_session(ctx, user, kind=KIND, client=client)
    return session_token, session, user


async def web_link_handler(call: Call[None]) -> m.WebLink:
    """POST /api/v1/web-links, for `pair web` (bearer session)."""
    return await create_link(call.ctx, call.me)
