"""Spaces: authorize (create + token), sharing, deletion, and the container's bootstrap.

The CLI's handlers, the admin commands and (later) the web page all go through these
functions, so a rule holds everywhere or nowhere.
"""

from __future__ import annotations

import hashlib
import math
import secrets

import msgspec

from broker import credentials, names
from broker.accounts import normalize_email
from broker.context import Context, timestamp
from broker.errors import Problem, invalid, not_found
from broker.signing import TokenInvalid
from broker.store import Conflict, SpaceRecord, TokenRecord, UserRecord
from pair.api import models as m
from pair.api.tokens import AUDIENCE, SPACE_TOKEN, SecretError, normalize

REAUTHORIZE = "Run `pair spaces authorize --space {name}` on your laptop for a fresh token."


LIVE = ("starting", "running", "stopping")  # states in which the agent's reports are current


def ssh_health(space: SpaceRecord) -> m.SshHealth | None:
    """What the agent last said about sshd, while it is current (the Space is live)."""
    if space.ssh is None or space.state not in LIVE:
        return None
    return msgspec.json.decode(space.ssh, type=m.SshHealth)


def to_wire(space: SpaceRecord, viewer: UserRecord, shared_with: list[str] | None) -> m.Space:
    owner = space.owner_id == viewer.id
    return m.Space(
        id=space.id,
        name=space.name,
        owner=space.owner_email,
        role="owner" if owner else "shared",
        state=space.state,  # type: ignore[arg-type]
        created_at=timestamp(space.created_at),
        updated_at=timestamp(space.updated_at),
        last_seen_at=timestamp(space.last_seen_at) if space.last_seen_at else None,
        container=msgspec.json.decode(space.facts, type=m.ContainerFacts) if space.facts else None,
        ssh=ssh_health(space),
        shared_with=shared_with if owner else None,
    )


async def visible(ctx: Context, user: UserRecord) -> list[m.Space]:
    spaces = await ctx.store.visible_spaces(user.id)
    shares = await ctx.store.shares_of([s.id for s in spaces if s.owner_id == user.id])
    return [to_wire(s, user, shares.get(s.id)) for s in spaces]


async def get_visible(ctx: Context, user: UserRecord, space_id: str) -> SpaceRecord:
    """The Space, if `user` owns it or it is shared with them; 404 otherwise (never 403, which
    would confirm that a guessed id exists)."""
    space = await ctx.store.space(space_id)
    if (
        space is None
        or space.deleted_at is not None
        or (space.owner_id != user.id and not await ctx.store.is_shared_with(space.id, user.id))
    ):
        raise not_found(f"The Space {space_id}", "List the Spaces you can see with `pair spaces list`.")
    return space


async def get_owned(ctx: Context, user: UserRecord, space_id: str, action: str) -> SpaceRecord:
    space = await get_visible(ctx, user, space_id)
    if space.owner_id != user.id:
        raise Problem(
            403,
            f'Only the owner of "{space.name}" ({space.owner_email}) can {action} it.',
            "Ask them to do it.",
            "not_owner",
        )
    return space


async def wire(ctx: Context, user: UserRecord, space: SpaceRecord) -> m.Space:
    shares = await ctx.store.shares(space.id) if space.owner_id == user.id else None
    return to_wire(space, user, shares)


async def _teammates(ctx: Context, owner: UserRecord, emails: list[str]) -> list[UserRecord]:
    """Resolve teammates' emails (each once), naming every unknown one in a single error."""
    users, unknown = [], []
    for email in dict.fromkeys(normalize_email(e) for e in emails):
        if email == owner.email:
            raise invalid("You own this Space; share it with other people.", "Drop your own email from the list.")
        user = await ctx.store.user_by_email(email)
        if user is None:
            unknown.append(email)
        else:
            users.append(user)
    if unknown:
        raise Problem(
            422,
            f"No account on this broker for {', '.join(unknown)}.",
            "Ask your admin to create it (`pair-broker users add EMAIL`), or check the spelling.",
            "unknown_user",
        )
    return users


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
    ctx.keyring.refresh()
    token = ctx.keyring.sign(claims)
    await ctx.store.add_token(TokenRecord(claims.jti, space.id, user.id, now, claims.exp, None, None, None))
    await ctx.store.audit(now, user.email, "space.token", space.id, claims.jti)
    space_wire = to_wire(space, user, shared_with) if shared_with is not None else await wire(ctx, user, space)
    return m.SpaceToken(space=space_wire, token=token, expires_at=timestamp(claims.exp), ttl_seconds=ttl)


async def authorize(ctx: Context, user: UserRecord, req: m.AuthorizeRequest) -> m.SpaceToken:
    ttl = _ttl(ctx, req.ttl_seconds)
    teammates = await _teammates(ctx, user, req.share_with)
    if req.name is not None and not names.is_valid(req.name):
        raise invalid(f"{req.name!r} is not a valid Space name.", f"Use {names.NAME_RULE}.")
    now = ctx.now()
    async with ctx.store.transaction():  # one commit for the Space, its shares, token and audit
        for attempt in range(20):
            name = req.name or names.generate()
            if attempt >= 10 and not req.name:
                name = f"{name}_{secrets.randbelow(1000)}"
            space = SpaceRecord(
                credentials.new_id("sp_"), user.id, user.email, name, "created", now, now, None, None, None, None
            )
            try:
                await ctx.store.create_space(space, [t.id for t in teammates])
                break
            except Conflict as exc:
                if req.name:
                    raise Problem(
                        409,
                        f'You already have a Space named "{req.name}".',
                        f"Pick another --name, or get a new token for it with "
                        f"`pair spaces authorize --space {req.name}`.",
                        "exists",
                    ) from exc
        else:  # pragma: no cover - 20 collisions in a row would take a very full broker
            raise Problem(409, "Could not find a free Space name.", "Pass one with --name.", "exists")
        await ctx.store.audit(now, user.email, "space.create", space.id, name)
        shared_with = sorted(t.email for t in teammates)
        for email in shared_with:
            await ctx.store.audit(now, user.email, "space.share", space.id, email)
        return await _issue(ctx, user, space, ttl, shared_with)


async def new_token(ctx: Context, user: UserRecord, space_id: str, req: m.NewTokenRequest) -> m.SpaceToken:
    space = await get_owned(ctx, user, space_id, "authorize")
    return await _issue(ctx, user, space, _ttl(ctx, req.ttl_seconds))


async def update_shares(ctx: Context, user: UserRecord, space_id: str, req: m.ShareUpdate) -> m.Space:
    space = await get_owned(ctx, user, space_id, "share")
    add = [t.id for t in await _teammates(ctx, user, req.add)]
    remove = [t.id for t in await _teammates(ctx, user, req.remove)]
    await ctx.store.update_shares(space.id, add, remove, ctx.now())
    for verb, emails in (("share", req.add), ("unshare", req.remove)):
        for email in emails:
            await ctx.store.audit(ctx.now(), user.email, f"space.{verb}", space.id, normalize_email(email))
    space = await ctx.store.space(space.id) or space
    await push(ctx, space)  # the agent updates its snapshot now, not at its next heartbeat
    if remove:
        await ctx.hub.end_tunnels(space.id, f'{user.email} stopped sharing "{space.name}" with you.', set(remove))
    return await wire(ctx, user, space)


async def delete(ctx: Context, user: UserRecord, space_id: str, *, actor: str | None = None) -> SpaceRecord:
    """Delete a Space: its tokens and agent credential stop working at once."""
    space = await get_owned(ctx, user, space_id, "delete")
    await ctx.store.delete_space(space.id, ctx.now())
    await ctx.store.audit(ctx.now(), actor or user.email, "space.delete", space.id, space.name)
    await ctx.hub.end_tunnels(space.id, f'The Space "{space.name}" was deleted.')
    await ctx.hub.disconnect(space.id, "the Space was deleted")  # the agent then removes all access
    return space


async def set_service(ctx: Context, user: UserRecord, space_id: str, *, up: bool) -> m.Space:
    """`up`/`down`: ask the agent to start or stop sshd. Down ends open sessions at once."""
    space = await get_owned(ctx, user, space_id, "start or stop")
    if not ctx.hub.connected(space.id):
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
        await ctx.store.set_desired_state(
            space.id, "running", "running" if space.state == "running" else "starting", ctx.now()
        )
    else:
        await ctx.store.set_desired_state(space.id, "stopped", "stopping", ctx.now())
        await ctx.hub.end_tunnels(space.id, f'The owner stopped SSH in "{space.name}".')
    await ctx.store.audit(ctx.now(), user.email, "space.up" if up else "space.down", space.id)
    space = await ctx.store.space(space.id) or space
    ctx.hub.changed(space.id)
    await push(ctx, space, start_ssh=up)  # `up` also starts an sshd that failed (the cause fixed, say)
    return await wire(ctx, user, space)


async def _open_sessions(ctx: Context, space_id: str, *, full: bool) -> list[m.TunnelSession]:
    """The open sessions of a Space, oldest first; without `full`, no address and no bytes."""
    live = {t.id: t for t in ctx.hub.tunnels_of(space_id)} if full else {}
    out = []
    for rec in await ctx.store.open_tunnels(space_id):
        t = live.get(rec.id)
        out.append(
            m.TunnelSession(
                id=rec.id,
                space_id=rec.space_id,
                email=rec.email,
                client_address=rec.client_address if full else "",
                opened_at=timestamp(rec.opened_at),
                bytes_in=t.bytes_in if t else 0,
                bytes_out=t.bytes_out if t else 0,
            )
        )
    return out


async def sessions(ctx: Context, user: UserRecord, space_id: str) -> list[m.TunnelSession]:
    space = await get_owned(ctx, user, space_id, "see the sessions of")
    return await _open_sessions(ctx, space.id, full=True)


async def who_is_connected(ctx: Context, space: m.Space) -> list[m.TunnelSession]:
    """Who is in a Space, for the person `space` was made for by `visible` (so their access is
    already checked). Everyone with access sees who is connected and since when; only the owner
    also sees from where (`client_address`, host:port) and the bytes each way, as in `pair spaces
    sessions`, which is the owner's. For anyone else those fields are empty."""
    return await _open_sessions(ctx, space.id, full=space.role == "owner")


async def kick(ctx: Context, user: UserRecord, space_id: str, email: str) -> int:
    space = await get_owned(ctx, user, space_id, "end sessions in")
    target = await ctx.store.user_by_email(normalize_email(email))
    if target is None:
        raise not_found(f"The user {email}")
    ended = await ctx.hub.end_tunnels(space.id, f'{user.email} ended your session in "{space.name}".', {target.id})
    await ctx.store.audit(ctx.now(), user.email, "space.kick", space.id, f"{target.email}: {ended}")
    return ended


# -- the container side ---------------------------------------------------------------------

TOKEN_ERRORS = {
    "malformed": "That is not a valid Space token.",
    "bad_signature": "The Space token's signature does not match: it was changed or cut short.",
    "unknown_key": "The Space token was signed by a key this broker does not know.",
    "wrong_audience": "That token is not a Space token (wrong audience).",
    "wrong_issuer": "The Space token was issued by another broker URL.",
    "not_yet_valid": "The Space token is not valid yet: this machine's clock or the broker's is wrong.",
}


def _token_problem(err: TokenInvalid, space: SpaceRecord | None) -> Problem:
    if err.code == "expired":
        expired_at = timestamp(int(err.claims["exp"])).strftime("%Y-%m-%d %H:%M UTC")
        named = f' for "{space.name}"' if space else ""
        return Problem(
            401,
            f"The Space token{named} expired at {expired_at}.",
            REAUTHORIZE.format(name=space.name if space else "NAME"),
            "token_expired",
        )
    detail = {
        "wrong_issuer": f"It names {err.claims.get('iss')!r}; bootstrap against that URL, or issue a new token.",
        "not_yet_valid": "Check the time on both machines (NTP).",
    }.get(err.code, "Copy the whole single line of SPACE_ID.txt written by `pair spaces authorize`.")
    return Problem(401, TOKEN_ERRORS[err.code], detail, f"token_{err.code}")


async def bootstrap(ctx: Context, req: m.BootstrapRequest) -> m.AgentRegistration:
    """Exchange a Space token for an agent credential. Single-use across containers; a retry
    from the same container (its first answer lost) gets a fresh credential."""
    try:
        pasted = normalize(req.token, SPACE_TOKEN)  # the CLI's own rules: what it accepts, this accepts
    except SecretError as err:
        raise Problem(401, err.message, err.hint, "token_malformed") from err
    ctx.keyring.refresh()
    try:
        claims = ctx.keyring.verify(pasted, issuer=ctx.settings.url, now=ctx.now())
    except TokenInvalid as err:
        sub = err.claims.get("sub")
        raise _token_problem(err, await ctx.store.space(sub) if isinstance(sub, str) else None) from err
    token = await ctx.store.token(claims.jti)
    space = await ctx.store.space(claims.sub)
    if token is None or space is None or token.space_id != space.id:
        raise Problem(
            401,
            "This broker has no record of that Space token.",
            "Its database may have been reset. Run `pair spaces authorize` for a new Space.",
            "token_unknown",
        )
    _refuse_spent(token, space, req.instance_id)
    credential = credentials.new_secret(credentials.AGENT)
    facts = msgspec.json.encode(req.facts).decode()
    won = await ctx.store.register_agent(
        claims.jti, space.id, req.instance_id, facts, credentials.digest(credential), ctx.now()
    )
    if not won:  # another request (or broker process) claimed it since we read it: say why
        fresh_token, fresh_space = await ctx.store.token(claims.jti), await ctx.store.space(claims.sub)
        if fresh_token is not None and fresh_space is not None:
            _refuse_spent(fresh_token, fresh_space, req.instance_id)
        raise Problem(
            409,
            f'That token was just used by another bootstrap of "{space.name}".',
            f"A token works for one container. {REAUTHORIZE.format(name=space.name)}",
            "token_used",
        )
    await ctx.store.audit(ctx.now(), f"agent:{space.id}", "space.bootstrap", space.id, req.facts.hostname)
    return m.AgentRegistration(
        space_id=space.id, space_name=space.name, owner=space.owner_email, state="starting", agent_credential=credential
    )


def _refuse_spent(token: TokenRecord, space: SpaceRecord, instance_id: str) -> None:
    """Raise the Problem for a token that can no longer bootstrap `instance_id`, if it cannot."""
    reauthorize = REAUTHORIZE.format(name=space.name)
    if space.deleted_at is not None:
        raise Problem(
            410,
            f'The Space "{space.name}" was deleted.',
            "Run `pair spaces authorize` on your laptop to create a new Space.",
            "space_deleted",
        )
    if token.revoked_at is not None:
        raise Problem(401, "That Space token was revoked.", reauthorize, "token_revoked")
    if token.used_instance_id is not None and token.used_instance_id != instance_id:
        raise Problem(
            409,
            f'That token already bootstrapped another container as "{space.name}".',
            f"A token works for one container. {reauthorize}",
            "token_used",
        )


async def authenticate_agent(ctx: Context, credential: str) -> SpaceRecord:
    space = await ctx.store.space_by_credential(credentials.digest(credential)) if credential else None
    if space is None:
        raise Problem(
            401,
            "This container's agent credential is no longer valid.",
            "The Space was deleted or bootstrapped in another container. "
            "Run `pair spaces authorize --space NAME` and bootstrap again with the new token.",
            "agent_unauthenticated",
        )
    return space


def _same_instance(space: SpaceRecord, instance_id: str) -> None:
    if instance_id != space.instance_id:
        raise Problem(
            409,
            f'The Space "{space.name}" is registered to another container.',
            REAUTHORIZE.format(name=space.name),
            "instance_mismatch",
        )


async def checkin(ctx: Context, space: SpaceRecord, req: m.AgentCheckin) -> m.AgentRegistration:
    _same_instance(space, req.instance_id)
    await ctx.store.update_facts(space.id, msgspec.json.encode(req.facts).decode(), ctx.now())
    return m.AgentRegistration(space_id=space.id, space_name=space.name, owner=space.owner_email, state=space.state)  # type: ignore[arg-type]


async def authorized_keys(ctx: Context, space: SpaceRecord) -> m.AuthorizedKeys:
    """Everyone who may log in to the Space right now: the owner and the people it is shared with."""
    rows = await ctx.store.authorized_keys(space.id)
    facts = msgspec.json.decode(space.facts, type=m.ContainerFacts) if space.facts else m.ContainerFacts()
    keys = [m.AuthorizedKey(key=key, fingerprint=fp, email=email, role=role) for email, role, key, fp in rows]  # type: ignore[arg-type]
    login_user = facts.login_user or "root"
    version = hashlib.sha256(msgspec.json.encode([login_user, keys])).hexdigest()[:16]
    return m.AuthorizedKeys(version=version, login_user=login_user, keys=keys)


def _state(desired: str, reported: str, ssh: m.SshHealth | None) -> str:
    """The state people see, from what the owner wants and what the agent reports.

    `running` means someone can get in: the agent is connected and sshd serves. While sshd is not
    serving (still starting, or failing: the port taken, a bad config) the Space stays `starting`
    and `ssh.reason` says why. Agents older than the health report count as serving."""
    if reported == "stopping":
        return "stopped"  # the agent itself is going away with its container
    if desired == "stopped":
        return "stopped" if reported == "stopped" else "stopping"
    serving = ssh is None or ssh.serving
    return "running" if reported == "running" and serving else "starting"


SNAPSHOT_CACHE_SECONDS = 5.0  # how stale keys changed by another process (an admin command) may be


async def cached_keys(ctx: Context, space: SpaceRecord) -> m.AuthorizedKeys:
    hit = ctx.snapshots.get(space.id)
    if hit is not None and ctx.clock() - hit[0] < SNAPSHOT_CACHE_SECONDS:
        return hit[1]
    snapshot = await authorized_keys(ctx, space)
    ctx.snapshots[space.id] = (ctx.clock(), snapshot)
    return snapshot


async def reply_for(
    ctx: Context, space: SpaceRecord, known_version: str = "", *, start_ssh: bool = False
) -> m.HeartbeatReply:
    snapshot = await cached_keys(ctx, space)
    return m.HeartbeatReply(
        space_id=space.id,
        space_name=space.name,
        desired_state="stopped" if space.desired_state == "stopped" else "running",
        interval_seconds=ctx.settings.agent_interval,
        snapshot_max_age=ctx.settings.snapshot_max_age,
        authorized_keys=None if snapshot.version == known_version else snapshot,
        start_ssh=start_ssh,
    )


async def push(ctx: Context, space: SpaceRecord, *, start_ssh: bool = False) -> None:
    """Tell a connected agent about new keys or a new desired state."""
    ctx.snapshots.pop(space.id, None)
    if ctx.hub.connected(space.id):
        await ctx.hub.send(space.id, m.ReplyMessage(reply=await reply_for(ctx, space, start_ssh=start_ssh)))


async def push_for_user(ctx: Context, user: UserRecord) -> None:
    """A person's keys changed: every Space they can get into needs a new snapshot."""
    for space in await ctx.store.visible_spaces(user.id):
        await push(ctx, space)


async def heartbeat(ctx: Context, space: SpaceRecord, beat: m.Heartbeat) -> m.HeartbeatReply:
    """The agent is alive (or stopping): move the Space's state, hand over changed keys.

    The hot path of the broker (every agent, every interval): a steady heartbeat writes nothing
    and reuses the cached keys; only a change of state or facts reaches the database."""
    _same_instance(space, beat.instance_id)
    now = ctx.now()
    state = _state(space.desired_state, beat.state, beat.ssh)
    facts = msgspec.json.encode(beat.facts).decode() if beat.facts else None
    ssh = msgspec.json.encode(beat.ssh).decode() if beat.ssh else None
    news = state != space.state or (ssh is not None and ssh != space.ssh)
    if news or (facts is not None and facts != space.facts):
        await ctx.store.heartbeat(space.id, state, now, facts, ssh)
        ctx.seen.pop(space.id, None)
        if state != space.state:
            await ctx.store.audit(now, f"agent:{space.id}", f"space.{state}", space.id)
        if news:
            ctx.hub.changed(space.id)  # a person's tunnel may be waiting for this
    else:
        ctx.seen[space.id] = now
    return await reply_for(ctx, space, beat.keys_version)


async def flush_seen(ctx: Context) -> None:
    """Write when agents were last seen (kept in memory between sweeps: a steady heartbeat writes nothing)."""
    seen, ctx.seen = ctx.seen, {}
    if seen:
        await ctx.store.record_seen(seen)


async def stop_silent(ctx: Context) -> list[str]:
    """Spaces whose agent has not reported for three intervals are stopped containers.

    Not before this process has served for that long: after a restart, agents need a moment to
    reconnect, and their Spaces are not stopped meanwhile (a person connecting waits for them)."""
    await flush_seen(ctx)
    now = ctx.now()
    # Times are whole seconds: the extra second keeps a just-seen Space from flapping.
    seen_before = now - math.ceil(3 * ctx.settings.agent_interval) - 1
    if seen_before < ctx.started_at:
        return []
    stopped = await ctx.store.stop_silent_spaces(seen_before, now)
    for space_id in stopped:
        ctx.hub.changed(space_id)  # a person waiting for it hears at once
    return stopped
