"""Access requests (issue 16; seed 002: "a platform admin approves the request … a Space is
automatically created for you"): someone without an account asks for one, an admin approves or
denies, and the waiting CLI is signed in directly. The hand-off is a device flow in RFC 8628's
vocabulary, as `gh auth login` does: the CLI holds a device code (a secret, stored hashed) and
polls with it every `interval` seconds; polling faster is answered `slow_down`; approval makes the
account and a Space and hands the next poll a session, once. No auth key is ever shown or copied:
the account gets a random one nobody sees (an admin can reset it later).

Requests are bounded (`MAX_PER_EMAIL` a day for one email, `MAX_PER_ADDRESS` an hour from one
client address; one pending per email), so flooding is refused with 429. An optional webhook
(PAIR_BROKER_REQUEST_WEBHOOK) is told of each new request, in the background: a failure is
logged once and never blocks or fails the request.
"""

from __future__ import annotations

import asyncio
import logging

from broker import accounts, credentials, spaces
from broker.context import Context, timestamp
from broker.emails import normalize_email
from broker.errors import Problem, not_found
from broker.store import AccessRequestRecord
from pair import __version__
from pair.api import models as m

log = logging.getLogger("pair.broker.requests")

DEVICE_CODE = "pair_dc_"
INTERVAL = 2  # seconds between polls (RFC 8628 3.2 `interval`)
SLOW_DOWN = 5  # seconds a `slow_down` adds (RFC 8628 3.5)
LIFETIME = 86400  # seconds a request (and its device code) stays valid while nobody decides
MAX_PER_EMAIL = 3  # requests naming one email, per day
MAX_PER_ADDRESS = 10  # requests from one client address, per hour
WEBHOOK_TIMEOUT = 5.0
_tasks: set[asyncio.Task[None]] = set()  # webhook deliveries in flight (kept from the collector)


def to_wire(request: AccessRequestRecord) -> m.AccessRequest:
    return m.AccessRequest(
        id=request.id,
        email=request.email,
        message=request.message,
        state=request.state,
        created_at=timestamp(request.created_at),
        expires_at=timestamp(request.expires_at),
        decided_by=request.decided_by,
        space=request.space_id or "",
    )


def _too_many(what: str) -> Problem:
    return Problem(
        429, f"Too many access requests {what}.", "Wait a while, or ask an admin directly.", "too_many_requests"
    )


async def file(ctx: Context, email: str, message: str, client_address: str) -> m.DeviceAuthorization:
    """A new pending request; Problem 429 past the bounds (checked first), else 409 when the
    email has an account or a pending request."""
    email = normalize_email(email)
    now = ctx.now()
    device_code = credentials.new_secret(DEVICE_CODE)
    request = AccessRequestRecord(
        credentials.new_id("req_"), email, message, client_address, "pending", now, now + LIFETIME
    )
    async with ctx.transaction() as tx:  # the bounds and the new row in one commit: a flood cannot race past them
        by_email, _ = await tx.store.count_access_requests(email, client_address, now - 86400)
        _, by_address = await tx.store.count_access_requests(email, client_address, now - 3600)
        if by_address >= MAX_PER_ADDRESS:
            raise _too_many("from your address")
        if by_email >= MAX_PER_EMAIL:
            raise _too_many(f"for {email} today")
        # Told only within the bounds, so that asking is no way to list who has an account here
        # beyond them (login answers 401 alike for known and unknown emails).
        if await tx.store.user_by_email(email) is not None:
            raise Problem(
                409,
                f"{email} has an account on this broker already.",
                "Log in with its auth key: `pair login EMAIL --key-file PATH`; an admin can reset a lost key.",
                "exists",
            )
        pending = [r for r in await tx.store.access_requests("pending") if r.email == email and r.expires_at > now]
        if pending:
            raise Problem(
                409,
                f"There is a pending access request for {email} already.",
                "Wait for an admin to decide it: `pair login EMAIL --request` where you asked resumes waiting.",
                "pending",
            )
        await tx.store.add_access_request(request, credentials.digest(device_code))
        await tx.store.audit(now, email, "request.create", request.id, client_address)
    _notify(ctx, request)
    return m.DeviceAuthorization(request_id=request.id, device_code=device_code, expires_in=LIFETIME, interval=INTERVAL)


async def poll(ctx: Context, device_code: str) -> m.DeviceToken:
    """The CLI's poll (RFC 8628 3.4/3.5). Problem 404 for an unknown code, 403 `access_denied`,
    410 `expired_token` (expired, or its session already handed out)."""
    request = await ctx.store.access_request_by_device_code(credentials.digest(device_code.strip()))
    if request is None:
        raise not_found("The access request", "Ask again with `pair login EMAIL --request`.")
    now = ctx.now()
    if request.state == "denied":
        raise Problem(
            403, f"An admin denied the access request for {request.email}.", "Ask your admins why.", "access_denied"
        )
    if request.state == "claimed":
        raise Problem(410, "This access request was used already.", "Log in with `pair login`.", "expired_token")
    if (
        request.state == "approved"
        and request.user_id is not None
        and await ctx.store.claim_access_request(request.id, now)
    ):
        user = await ctx.store.user_by_email(request.email)
        if user is None:  # removed between approval and this poll
            raise Problem(410, "The account made for this request is gone.", "Ask your admins.", "expired_token")
        token, session = await accounts.start_session(
            ctx, user, kind="cli", client=f"pair {__version__} (access request)"
        )
        await ctx.store.audit(now, user.email, "request.claim", request.id)
        space = await ctx.store.space(request.space_id) if request.space_id else None
        return m.DeviceToken(
            status="approved",
            interval=INTERVAL,
            session_token=token,
            expires_at=timestamp(session.expires_at),
            user=accounts.user_wire(user),
            space=space.name if space else "",
        )
    if request.expires_at <= now:
        raise Problem(410, "The access request expired before an admin decided it.", "Ask again.", "expired_token")
    too_soon = request.last_polled_at is not None and now - request.last_polled_at < INTERVAL - 1
    await ctx.store.touch_access_request(request.id, now)
    if too_soon:
        return m.DeviceToken(status="slow_down", interval=INTERVAL + SLOW_DOWN)
    return m.DeviceToken(status="authorization_pending", interval=INTERVAL)


async def _pending(ctx: Context, request_id: str) -> AccessRequestRecord:
    request = await ctx.store.access_request(request_id)
    if request is None:
        raise not_found(
            f"The access request {request_id}",
            "Check its id.",
            admin_detail="List them with `pair-broker requests list`.",
        )
    if request.state != "pending" or request.expires_at <= ctx.now():
        state = "expired" if request.state == "pending" else request.state
        raise Problem(409, f"The access request {request_id} is {state}, not pending.", "", "not_pending")
    return request


async def approve(ctx: Context, request_id: str, *, actor: str) -> m.AccessRequest:
    """Make the account and a Space (the default template, within quota) in one transaction;
    the waiting CLI's next poll gets a session. Problem 404/409 as `_pending` says."""
    request = await _pending(ctx, request_id)
    now = ctx.now()
    async with ctx.transaction() as tx:
        user, _unseen_key = await accounts.create_user(tx, request.email, actor=actor)
        space = await spaces.create_in(tx, user, actor=actor, now=now)
        if not await tx.store.decide_access_request(request.id, "approved", actor, now, user.id, space.id):
            raise Problem(409, f"The access request {request_id} was decided meanwhile.", "", "not_pending")
        await tx.store.audit(now, actor, "request.approve", request.id, request.email)
    return to_wire(await ctx.store.access_request(request.id) or request)


async def deny(ctx: Context, request_id: str, *, actor: str) -> m.AccessRequest:
    request = await _pending(ctx, request_id)
    now = ctx.now()
    async with ctx.transaction() as tx:
        if not await tx.store.decide_access_request(request.id, "denied", actor, now):
            raise Problem(409, f"The access request {request_id} was decided meanwhile.", "", "not_pending")
        await tx.store.audit(now, actor, "request.deny", request.id, request.email)
    return to_wire(await ctx.store.access_request(request.id) or request)


async def resolve_id(ctx: Context, ref: str) -> str:
    """A request's id from its id or the email of its pending request (for `pair-broker requests`)."""
    if ref.startswith("req_"):
        return ref
    email = normalize_email(ref)
    pending = [r for r in await ctx.store.access_requests("pending") if r.email == email]
    if not pending:
        raise not_found(
            f"A pending access request for {email}",
            "Check the email.",
            admin_detail="List them with `pair-broker requests list`.",
        )
    return pending[-1].id


# -- the webhook -------------------------------------------------------------------------------


def _notify(ctx: Context, request: AccessRequestRecord) -> None:
    url = ctx.settings.request_webhook
    if not url:
        return
    task = asyncio.get_running_loop().create_task(_deliver(url, request, ctx.settings.url))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


def webhook_body(request: AccessRequestRecord, broker_url: str) -> dict[str, str]:
    """What the webhook receives (docs/operations.md): JSON, no secret."""
    return {
        "event": "access_request.created",
        "id": request.id,
        "email": request.email,
        "message": request.message,
        "created_at": timestamp(request.created_at).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "admin_url": f"{broker_url}/admin",
    }


async def _deliver(url: str, request: AccessRequestRecord, broker_url: str) -> None:
    import httpx

    try:
        async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT, follow_redirects=False) as client:
            answer = await client.post(url, json=webhook_body(request, broker_url))
        if answer.status_code >= 300:
            log.warning("The access request webhook answered %s for %s.", answer.status_code, request.id)
    except httpx.HTTPError as exc:
        log.warning("The access request webhook failed for %s: %s", request.id, exc or type(exc).__name__)
