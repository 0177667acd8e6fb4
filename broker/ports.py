"""Shared ports (issue 12): the ports a Space shares at their own origins, who may open them, and
the addresses they answer at. The proxy engine is `broker.apps` (no store, no hub); the app side
of the broker, which puts the two together for each request, is `broker.app_gate`.

- A port is shared by its Space's owner at a *level* (pair.api.models.PortLevel), decided by
  `access.may_open_port` on every request and every stream.
- Its address is `PORT--SPACE--OWNER.<apps domain>` (broker.apps.hosts): the owner's handle is
  kept per user (`handle`), the Space's label per shared port, unique, hashed when the readable
  one is another Space's.
- Narrowing a level or unsharing ends the app proxy's open streams to that port at once
  (`events.end_streams(apps=…)`); unshare, kick, delete and down end them as every stream.
- Without an apps domain, port sharing is off and says so (`off`).
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from urllib.parse import urlsplit

from broker import access, events
from broker.apps import auth
from broker.apps.hosts import AppAddress, AppsDomain, handle_candidates, space_label
from broker.context import Context, timestamp
from broker.errors import Problem
from broker.store import Conflict, PortRecord, SpaceRecord, UserRecord
from pair.api import grammar
from pair.api import models as m

ANONYMOUS = UserRecord("", "anonymous", False, 0)  # a public port's visitor who has not signed in
SIGNIN_PATH = "/apps/signin"  # on the broker's origin: auth's step 2
SECRET_FILE = "app-credentials.key"  # noqa: S105 - a file name, not a secret


def off() -> Problem:
    """Why port sharing is off on this broker (it has no apps domain): 409 ports_off, refusing a
    share, and the reason a listing gives (`detail_for` the asker: admins are told the command
    that turns it on, everyone else to ask the operator)."""
    return Problem(
        409,
        "Port sharing is off on this broker: it has no apps domain for shared ports' addresses.",
        'Ask its operator to give it one (docs/operations.md, "Shared ports: the apps domain").',
        "ports_off",
        admin_detail="Start it with `pair-broker serve --apps-domain '*.apps.example.com'` "
        "(or PAIR_BROKER_APPS_DOMAIN), with a wildcard DNS record and certificate (docs/operations.md).",
    )


LEVEL_WORDS: dict[str, str] = {
    "owner": "its owner only",
    "shared": "the people the Space is shared with",
    "authenticated": "everyone signed in to this broker",
    "public": "anyone with the link",
}


@functools.lru_cache(maxsize=8)
def _domain(setting: str) -> AppsDomain | None:
    return AppsDomain.parse(setting) if setting else None


def apps_domain(ctx: Context) -> AppsDomain | None:
    """The broker's apps domain (checked when the settings were read), or None: sharing is off."""
    return _domain(ctx.settings.apps_domain)


@functools.lru_cache(maxsize=8)
def _credentials(data_dir: Path) -> auth.AppCredentials:
    return auth.AppCredentials(auth.load_secret(data_dir / SECRET_FILE))


@functools.lru_cache(maxsize=8)
def _shared_credentials(secret: bytes) -> auth.AppCredentials:
    return auth.AppCredentials(secret)


def credentials(ctx: Context) -> auth.AppCredentials:
    """The app-origin credentials' HMAC key: among replicas, derived from the encryption key
    they share (broker.replicas), so a sign-in begun on one ends on another; otherwise from the
    data dir (made once, 0600)."""
    if ctx.replica is not None and ctx.replica.app_secret:
        return _shared_credentials(ctx.replica.app_secret)
    return _credentials(ctx.settings.data_dir)


class StoreTickets:
    """broker.apps.auth.TicketLedger in the store, so a ticket works once across processes."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def claim(self, nonce: str, expires_at: int, now: int) -> bool:
        return await self.ctx.store.claim_ticket(nonce, expires_at, now)


def secure(ctx: Context) -> bool:
    """App origins use https when the broker's public URL does (the same certificate setup)."""
    return ctx.settings.url.startswith("https://")


def app_origin(ctx: Context, domain: AppsDomain, address: str) -> str:
    """`scheme://PORT--SPACE--OWNER.<domain>[:port]`: the broker's scheme, and the domain's port
    or else the broker's public URL's (the same server answers both)."""
    parts = urlsplit(ctx.settings.url)
    port = domain.port or parts.port
    return f"{parts.scheme}://{address}.{domain.suffix}" + (f":{port}" if port else "")


def apps_source(ctx: Context) -> str:
    """Every app origin as one CSP source expression (`https://*.apps.example.com:8443`), or ""."""
    domain = apps_domain(ctx)
    if domain is None:
        return ""
    parts = urlsplit(ctx.settings.url)
    port = domain.port or parts.port
    return f"{parts.scheme}://*.{domain.suffix}" + (f":{port}" if port else "")


def parse_port(text: str) -> int:
    """A port from a URL path or a form: 1–65535 in decimal. Raises Problem 422."""
    text = text.strip()
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 65535):
        raise Problem(422, f"{text[:12]!r} is not a TCP port.", "A port is a number from 1 to 65535.", "invalid")
    return int(text)


def check_label(label: str) -> str:
    """A port's label: pair.api.grammar.label_problem's rule (one line of visible text, at most
    80 characters, no bidi or invisible formatting characters). Raises Problem 422 naming the
    cause."""
    problem = grammar.label_problem(label)
    if problem is not None:
        hint = "Shorten it." if problem.startswith("A port's label is at most") else "Use visible text only."
        raise Problem(422, problem, hint, "invalid")
    return label.strip()


def narrower(new: str, old: str) -> bool:
    return m.PORT_LEVELS.index(new) < m.PORT_LEVELS.index(old)


def to_wire(ctx: Context, domain: AppsDomain, record: PortRecord) -> m.SharedPort:
    return m.SharedPort(
        space_id=record.space_id,
        port=record.port,
        level=record.level,
        label=record.label,
        url=app_origin(ctx, domain, record.address) + "/",
        shared_at=timestamp(record.created_at),
    )


def _require_domain(ctx: Context) -> AppsDomain:
    domain = apps_domain(ctx)
    if domain is None:
        raise off()
    return domain


async def handle(ctx: Context, user: UserRecord) -> str:
    """The user's DNS handle (the OWNER part of their app addresses), given on first need."""
    current = await ctx.store.user_handle(user.id)
    for candidate in handle_candidates(user.email):
        if current:
            return current
        await ctx.store.set_user_handle(user.id, candidate)  # False: another user has it, try the next
        current = await ctx.store.user_handle(user.id)
    raise AssertionError("unreachable: handle_candidates never ends")


# -- the owner's verbs --------------------------------------------------------------------------


async def share(ctx: Context, user: UserRecord, space_id: str, port_text: str, request: m.PortShare) -> m.SharedPort:
    """Share a port of a Space `user` owns, or change its level or label. A narrower level ends
    the app's open connections (those still allowed reconnect). Raises Problem (404, 403
    not_owner, 409 ports_off, 422 invalid)."""
    domain = _require_domain(ctx)
    port = parse_port(port_text)
    space = await access.get_owned(ctx, user, space_id, "share ports of")
    existing = next((p for p in await ctx.store.shared_ports(space.id) if p.port == port), None)
    level = request.level or (existing.level if existing else "owner")
    label = check_label(request.label) if request.label is not None else (existing.label if existing else "")
    now = ctx.now()
    if existing is not None:
        record = dataclasses.replace(existing, level=level, label=label, updated_at=now)
        await ctx.store.share_port(record)
        if narrower(level, existing.level):
            reason = f'{user.email} changed who can open port {port} of "{space.name}" ({LEVEL_WORDS[level]}).'
            await events.end_streams(ctx, space.id, reason, kinds=["port"], apps=[record.address])
    else:
        record = await _new_share(ctx, user, space, port, level, label, now)
    await ctx.store.audit(now, user.email, "port.share", space.id, f"{port} {level}")
    return to_wire(ctx, domain, record)


async def _new_share(
    ctx: Context, user: UserRecord, space: SpaceRecord, port: int, level: m.PortLevel, label: str, now: int
) -> PortRecord:
    owner = await handle(ctx, user)
    for hashed in (False, True):
        address = AppAddress(port, space_label(space.name, hashed=hashed), owner).label
        record = PortRecord(space.id, port, level, label, address, now, now)
        try:
            await ctx.store.share_port(record)
        except Conflict:
            continue  # the readable label is another Space's (`a_b` beside `a-b`): the hashed one
        return record
    raise Problem(409, f"No address is free for port {port} of {space.name!r}.", "Rename the Space.", "no_free_address")


async def unshare(ctx: Context, user: UserRecord, space_id: str, port_text: str) -> None:
    """Stop sharing a port; the app's open connections end at once. Raises Problem (404 when
    it is not shared, 409 ports_off when it is not and sharing is off: that is the reason,
    403 not_owner). A port shared before sharing was turned off can still be unshared."""
    port = parse_port(port_text)
    space = await access.get_owned(ctx, user, space_id, "unshare ports of")
    removed = await ctx.store.unshare_port(space.id, port)
    if removed is None:
        _require_domain(ctx)
        raise Problem(
            404, f'Port {port} of "{space.name}" is not shared.', "See `pair spaces ports list`.", "not_found"
        )
    reason = f'{user.email} stopped sharing port {port} of "{space.name}".'
    await events.end_streams(ctx, space.id, reason, kinds=["port"], apps=[removed.address])
    await ctx.store.audit(ctx.now(), user.email, "port.unshare", space.id, str(port))


async def listing(ctx: Context, user: UserRecord, space_id: str) -> m.SpacePorts:
    """The ports of a Space `user` sees: all shared ones and the listening candidates for its
    owner; for others, those not kept to the owner."""
    space = await access.get_visible(ctx, user, space_id)
    domain = apps_domain(ctx)
    if domain is None:
        why = off()
        return m.SpacePorts(space_id=space.id, enabled=False, reason=f"{why.message} {why.detail_for(user.is_admin)}")
    owner = space.owner_id == user.id
    records = [r for r in await ctx.store.shared_ports(space.id) if owner or r.level != "owner"]
    shared = {r.port for r in records}
    listening = [p for p in (await ctx.agent_report(space.id)).listening if p not in shared] if owner else []
    return m.SpacePorts(
        space_id=space.id, enabled=True, shared=[to_wire(ctx, domain, r) for r in records], listening=listening
    )


# -- the app side -------------------------------------------------------------------------------


async def find(ctx: Context, address: AppAddress) -> tuple[PortRecord, SpaceRecord] | None:
    """The shared port at an address and its (live) Space, or None."""
    record = await ctx.store.shared_port(address.label)
    if record is None:
        return None
    space = await ctx.store.space(record.space_id)
    if space is None or space.deleted_at is not None:
        return None
    return record, space


async def reach(ctx: Context, user: UserRecord | None, space_id: str, address: str) -> SpaceRecord:
    """The Space, while the port at `address` is still shared with `user` (None: not signed in):
    what a stream of the app proxy re-checks while it opens. Raises Problem 404 or 403."""
    record = await ctx.store.shared_port(address)
    space = await ctx.store.space(space_id)
    if record is None or record.space_id != space_id or space is None or space.deleted_at is not None:
        raise Problem(404, "This port is no longer shared.", "", "not_found")
    if not await access.may_open_port(ctx, user, space, record.level):
        raise Problem(403, f"This port is open to {LEVEL_WORDS[record.level]}.", "", "forbidden")
    return space
