"""Managing Spaces: authorize (create + token), new tokens, sharing, deletion, up and down, and
the Space as people see it (`to_wire`).

The API's handlers, the admin commands and the web page all go through these functions, so a
rule holds everywhere or nowhere. Whether a person may do it at all is `broker.access`'s call;
the container's side is `broker.agents`, the keys its agent holds `broker.snapshots`.
"""

from __future__ import annotations

import secrets

import msgspec

from broker import access, credentials, events, metrics, names, quotas, snapshots, templates
from broker.context import Context, timestamp
from broker.emails import normalize_email
from broker.errors import Problem, invalid
from broker.store import Conflict, SpaceRecord, TemplateRecord, TokenRecord, UserRecord
from pair.api import models as m
from pair.api.tokens import AUDIENCE

NET_WINDOW = 86400  # seconds: `net` in lists is the bytes through the relay in the last 24 h
LIVE = ("starting", "running", "stopping")  # states in which the agent's reports are current


def ssh_health(space: SpaceRecord) -> m.SshHealth | None:
    """What the agent last said about sshd, while it is current (the Space is live)."""
    if space.ssh is None or space.state not in LIVE:
        return None
    return msgspec.json.decode(space.ssh, type=m.SshHealth)


def to_wire(
    space: SpaceRecord, viewer: UserRecord, shared_with: list[str] | None, groups: list[str] | None = None
) -> m.Space:
    owner = space.owner_id == viewer.id
    return m.Space(
        id=space.id,
        name=space.name,
        owner=space.owner_email,
        role="owner" if owner else "shared",
        state=space.state,
        created_at=timestamp(space.created_at),
        updated_at=timestamp(space.updated_at),
        last_seen_at=timestamp(space.last_seen_at) if space.last_seen_at else None,
        container=msgspec.json.decode(space.facts, type=m.ContainerFacts) if space.facts else None,
        ssh=ssh_health(space),
        shared_with=shared_with if owner else None,
        shared_with_groups=(groups or []) if owner and shared_with is not None else None,
        template=space.template,
        compute_units=space.compute_units,
        storage_units=space.storage_units,
    )


async def visible(ctx: Context, user: UserRecord) -> list[m.Space]:
    spaces = await access.visible_spaces(ctx, user.id)
    owned = [s.id for s in spaces if s.owner_id == user.id]
    shares = await ctx.store.shares_of(owned)
    groups = await ctx.store.group_shares_of(owned)
    net = await ctx.store.net_bytes([s.id for s in spaces], ctx.now() - NET_WINDOW)
    out = []
    for s in spaces:
        wired = to_wire(s, user, shares.get(s.id), groups.get(s.id))
        wired.net_bytes = net[s.id] + sum(t.bytes_in + t.bytes_out for t in ctx.hub.streams_of(s.id))
        out.append(wired)
    return out


async def wire(ctx: Context, user: UserRecord, space: SpaceRecord) -> m.Space:
    if space.owner_id != user.id:
        return to_wire(space, user, None)
    groups = await ctx.store.group_shares_of([space.id])
    return to_wire(space, user, await ctx.store.shares(space.id), groups[space.id])


def _ttl(ctx: Context, ttl_seconds: int | None) -> int:
    ttl = ctx.settings.token_ttl if ttl_seconds is None else ttl_seconds
    if ttl < m.MIN_TOKEN_TTL:
        raise invalid("A Space token must live at least one minute.", "Pass a longer --ttl, such as 1h.")
    if ttl > ctx.settings.max_token_ttl:
        raise invalid(
            f"A Space token may live at most {ctx.settings.max_token_ttl} seconds on this broker.",
            "Pass a shorter --ttl; the limit is PAIR_BROKER_MAX_TOKEN_TTL.",
        )
    return ttl


async def _issue(
    ctx: Context, user: UserRecord, space: SpaceRecord, ttl: int, shared_with: list[str] | None = None
) -> m.SpaceToken:
    now = ctx.now()
    claims = m.SpaceTokenClaims(
        iss=ctx.settings.url, aud=AUDIENCE, sub=space.id, iat=now, nbf=now, exp=now + ttl, jti=secrets.token_urlsafe(16)
    )
    token = ctx.keyring.sign(claims)  # the caller brought the keys up to date, outside any transaction
    await ctx.store.add_token(TokenRecord(claims.jti, space.id, user.id, now, claims.exp, None, None, None))
    await ctx.store.audit(now, user.email, "space.token", space.id, claims.jti)
    metrics.TOKENS_ISSUED.labels("space_token").inc()
    space_wire = to_wire(space, user, shared_with) if shared_with is not None else await wire(ctx, user, space)
    return m.SpaceToken(space=space_wire, token=token, expires_at=timestamp(claims.exp), ttl_seconds=ttl)


def new_space(
    owner: UserRecord,
    name: str,
    now: int,
    template: TemplateRecord | None,
    *,
    space_key_id: str | None = None,
    container_name: str | None = None,
) -> SpaceRecord:
    """A Space not yet stored: a new id, state `created`, `template`'s name and units (none: 0),
    and for one a Space key makes, the key's id and the container's identity."""
    return SpaceRecord(
        credentials.new_id("sp_"),
        owner.id,
        owner.email,
        name,
        "created",
        now,
        now,
        None,
        None,
        None,
        None,
        template=template.name if template else None,
        compute_units=template.compute_units if template else 0,
        storage_units=template.storage_units if template else 0,
        space_key_id=space_key_id,
        container_name=container_name,
    )


def created_detail(space: SpaceRecord) -> str:
    """The detail of a Space's `space.create` audit row: its name, then the template it was made
    from (`demo, template small`; `demo, no template` on a broker without templates), as the
    `space_key.create` row names a key's. Up to the first ", " it is the name, as all of a row
    written before 2026-11-30 is (a Space name holds no comma)."""
    made_of = f"template {space.template}" if space.template is not None else "no template"
    return f"{space.name}, {made_of}"


async def authorize(ctx: Context, user: UserRecord, req: m.AuthorizeRequest) -> m.SpaceToken:
    ttl = _ttl(ctx, req.ttl_seconds)
    teammates = await access.teammates_by_email(ctx, user, req.share_with)
    template = await templates.resolve(ctx, req.template)
    await ctx.keyring.update()  # it may read the database: before the transaction, not inside it
    now = ctx.now()
    async with ctx.transaction() as tx:  # one commit for the quota check, the Space, its shares, token and audit
        storage = template.storage_units if template else 0
        await quotas.check(tx, user.id, quotas.new_space(template.name if template else None, storage))
        space = await _create(tx, user, req.name, [t.id for t in teammates], now, template)
        await tx.store.audit(now, user.email, "space.create", space.id, created_detail(space))
        shared_with = sorted(t.email for t in teammates)
        for email in shared_with:
            await tx.store.audit(now, user.email, "space.share", space.id, email)
        return await _issue(tx, user, space, ttl, shared_with)


async def create_in(tx: Context, user: UserRecord, *, actor: str, now: int) -> SpaceRecord:
    """A new Space for `user` from the default template, within their quota, with a generated
    name and no token (they get one with `pair spaces authorize --space NAME`): what approving an
    access request makes. Call it inside the transaction that makes the account."""
    template = await templates.resolve(tx, None)
    storage = template.storage_units if template else 0
    await quotas.check(tx, user.id, quotas.new_space(template.name if template else None, storage))
    space = await _create(tx, user, None, [], now, template)
    await tx.store.audit(now, actor, "space.create", space.id, created_detail(space))
    return space


async def _create(
    ctx: Context,
    user: UserRecord,
    name: str | None,
    shares: list[str],
    now: int,
    template: TemplateRecord | None = None,
) -> SpaceRecord:
    """A new Space of `user` named `name`, or by a generated name that is free. Each attempt is a
    savepoint, so a name taken meanwhile (a Conflict, which aborts what it runs in) undoes only
    that attempt; 409 (`exists`) when `name` is taken."""
    for attempt in range(20):
        chosen = name or names.generate()
        if attempt >= 10 and not name:
            chosen = f"{chosen}_{secrets.randbelow(1000)}"
        space = new_space(user, chosen, now, template)
        try:
            async with ctx.transaction() as attempt_tx:
                await attempt_tx.store.create_space(space, shares)
        except Conflict as exc:
            if name:
                raise Problem(
                    409,
                    f'You already have a Space named "{name}".',
                    f"Pick another --name, or get a new token for it with `pair spaces authorize --space {name}`.",
                    "exists",
                ) from exc
            continue
        return space
    # pragma: no cover - 20 collisions in a row would take a very full broker
    raise Problem(409, "Could not find a free Space name.", "Pass one with --name.", "exists")


async def new_token(ctx: Context, user: UserRecord, space_id: str, req: m.NewTokenRequest) -> m.SpaceToken:
    space = await access.get_owned(ctx, user, space_id, "authorize")
    await ctx.keyring.update()
    return await _issue(ctx, user, space, _ttl(ctx, req.ttl_seconds))


async def update_shares(ctx: Context, user: UserRecord, space_id: str, req: m.ShareUpdate) -> m.Space:
    """Share a Space with people and groups, or stop; those who lose access lose it at once."""
    space = await access.get_owned(ctx, user, space_id, "share")
    add = [t.id for t in await access.teammates_by_email(ctx, user, req.add)]
    removed = await access.teammates_by_email(ctx, user, req.remove)
    add_groups = [await access.group_by_name(ctx, name) for name in dict.fromkeys(req.add_groups)]
    remove_groups = [await access.group_by_name(ctx, name) for name in dict.fromkeys(req.remove_groups)]
    now = ctx.now()
    async with ctx.transaction() as tx:
        await tx.store.update_shares(space.id, add, [t.id for t in removed], now)
        if add_groups or remove_groups:
            await tx.store.update_group_shares(space.id, [g.id for g in add_groups], [g.id for g in remove_groups], now)
        for verb, emails in (("share", req.add), ("unshare", req.remove)):
            for email in emails:
                await tx.store.audit(now, user.email, f"space.{verb}", space.id, normalize_email(email))
        for verb, groups in (("share", add_groups), ("unshare", remove_groups)):
            for group in groups:
                await tx.store.audit(now, user.email, f"space.{verb}", space.id, f"group:{group.name}")
    candidates = {t.email for t in removed} | {email for g in remove_groups for email in g.members}
    space = await ctx.store.space(space.id) or space
    await revoke_lost(ctx, space, candidates, f'{user.email} stopped sharing "{space.name}" with you.')
    return await wire(ctx, user, space)


async def revoke_lost(ctx: Context, space: SpaceRecord, emails: set[str], reason: str) -> None:
    """After a change of who may reach `space` (a share, a group's share or membership): its
    agent gets the new keys now, and those of `emails` who can no longer see it lose their
    open streams at once (each with `reason`). Someone still reaching it another way (shared
    directly, or through another group) keeps theirs."""
    await snapshots.push(ctx, space)  # the agent updates its snapshot now, not at its next heartbeat
    lost = []
    for email in sorted(emails):
        person = await ctx.store.user_by_email(email)
        if person is not None and not await access.can_see(ctx, person, space):
            lost.append(person)
    if lost:
        await events.end_streams(ctx, space.id, reason, people=lost)


async def delete(ctx: Context, user: UserRecord, space_id: str, *, actor: str | None = None) -> SpaceRecord:
    """Delete a Space: its tokens and agent credential stop working at once."""
    space = await access.get_owned(ctx, user, space_id, "delete")
    await ctx.store.delete_space(space.id, ctx.now())
    await ctx.store.audit(ctx.now(), actor or user.email, "space.delete", space.id, space.name)
    await events.end_streams(ctx, space.id, f'The Space "{space.name}" was deleted.')
    await events.credential_changed(ctx, space.id, "the Space was deleted")  # the agent then removes all access
    return space


async def set_service(ctx: Context, user: UserRecord, space_id: str, *, up: bool) -> m.Space:
    """`up`/`down`: ask the agent to start or stop sshd. Down ends open streams at once."""
    space = await access.get_owned(ctx, user, space_id, "start or stop")
    if not await ctx.agent_connected(space.id):
        if up:
            raise Problem(
                409,
                f'The container of "{space.name}" is not running, so SSH cannot be started.',
                "Start the Codespace or workspace (its supervisord starts the agent); "
                "the Space then comes up by itself.",
                "container_not_running",
            )
        await ctx.store.set_desired_state(space.id, "stopped", "stopped", ctx.now())
    elif up:
        async with ctx.transaction() as tx:  # the quota check and the start commit together
            fresh = await tx.store.space(space.id) or space
            await quotas.check(tx, space.owner_id, quotas.starting(fresh))
            await tx.store.set_desired_state(
                space.id, "running", "running" if fresh.state == "running" else "starting", ctx.now()
            )
    else:
        await ctx.store.set_desired_state(space.id, "stopped", "stopping", ctx.now())
        await events.end_streams(ctx, space.id, f'The owner stopped SSH in "{space.name}".')
    await ctx.store.audit(ctx.now(), user.email, "space.up" if up else "space.down", space.id)
    space = await ctx.store.space(space.id) or space
    await events.space_changed(ctx, space.id)
    await snapshots.push(ctx, space, start_ssh=up)  # `up` also starts an sshd that failed (the cause fixed, say)
    return await wire(ctx, user, space)
