"""The agent's lifecycle, as the broker sees it: a container exchanges its Space token for an
agent credential (bootstrap), checks in with it, heartbeats (the state people see), and a Space
whose agent falls silent is stopped by the sweep.

The HTTP handlers and the relay's control channel call these; the keys each heartbeat reply
carries come from `broker.snapshots`.
"""

from __future__ import annotations

import math

import msgspec

from broker import credentials, events, metrics, quotas, snapshots
from broker.context import Context, timestamp
from broker.errors import Problem
from broker.signing import TokenFault, TokenInvalid
from broker.store import DesiredState, SpaceRecord, TokenRecord
from pair.api import models as m
from pair.api.fields import check_facts
from pair.api.grammar import Invalid
from pair.api.tokens import SPACE_TOKEN, SecretError, normalize

REAUTHORIZE = "Run `pair spaces authorize --space {name}` on your laptop for a fresh token."

TOKEN_ERRORS: dict[TokenFault, tuple[str, m.ErrorCode]] = {
    "malformed": ("That is not a valid Space token.", "token_malformed"),
    "bad_signature": (
        "The Space token's signature does not match: it was changed or cut short.",
        "token_bad_signature",
    ),
    "unknown_key": ("The Space token was signed by a key this broker does not know.", "token_unknown_key"),
    "wrong_audience": ("That token is not a Space token (wrong audience).", "token_wrong_audience"),
    "wrong_issuer": ("The Space token was issued by another broker URL.", "token_wrong_issuer"),
    "not_yet_valid": (
        "The Space token is not valid yet: this machine's clock or the broker's is wrong.",
        "token_not_yet_valid",
    ),
}


def checked_facts(facts: m.ContainerFacts) -> str:
    """The facts as stored, once they fit their types' grammar (pair.api.fields.check_facts); 422
    `invalid_facts` with the type's sentence otherwise. Every fact is refused
    rather than dropped: the login user and host keys end up in teammates' ssh configs and
    known_hosts files, so a container that reports them wrong gets no SSH at all (fail closed)."""
    try:
        check_facts(facts)
    except Invalid as exc:
        raise Problem(422, exc.message, exc.hint, "invalid_facts") from exc
    return msgspec.json.encode(facts).decode()


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
    message, code = TOKEN_ERRORS[err.code]
    return Problem(401, message, detail, code)


async def bootstrap(ctx: Context, req: m.BootstrapRequest) -> m.AgentRegistration:
    """Exchange a Space token for an agent credential. Single-use across containers; a retry
    from the same container (its first answer lost) gets a fresh credential."""
    facts = checked_facts(req.facts)  # before the token is spent on a container that gets no SSH
    claims, token, space = await _token_of(ctx, req.token)
    _refuse_spent(token, space, req.instance_id)
    credential = credentials.new_secret(credentials.AGENT)
    # The Space starts to run: its compute units are checked in the transaction that claims the
    # token, so a refusal leaves the token unspent (it works once the owner has room).
    async with ctx.transaction() as tx:
        await quotas.check(tx, space.owner_id, quotas.starting(await tx.store.space(space.id) or space))
        won = await tx.store.register_agent(
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
    if space.instance_id is not None and space.instance_id != req.instance_id:  # the old container's channel ends
        await events.credential_changed(ctx, space.id, "the Space was bootstrapped in another container")
    metrics.TOKENS_ISSUED.labels("agent_credential").inc()
    return m.AgentRegistration(
        space_id=space.id, space_name=space.name, owner=space.owner_email, state="starting", agent_credential=credential
    )


async def check(ctx: Context, pasted: str, instance_id: str | None) -> m.RegistrationCheckResult:
    """Whether the Space token `pasted` would bootstrap the container `instance_id` (None: one
    that has bootstrapped nothing yet) now: raises the Problem bootstrap would raise, else says
    whose Space it becomes. Nothing is used or recorded. (The owner's quota is bootstrap's to
    judge: it may change before then.)"""
    _, token, space = await _token_of(ctx, pasted)
    _refuse_spent(token, space, instance_id or "")
    return m.RegistrationCheckResult(owner=space.owner_email, space_name=space.name)


async def _token_of(ctx: Context, pasted: str) -> tuple[m.SpaceTokenClaims, TokenRecord, SpaceRecord]:
    """The verified claims of a Space token as pasted, its record and its Space; the Problem a
    bootstrap answers otherwise (malformed, failing verification, or unknown to this broker)."""
    try:
        normalized = normalize(pasted, SPACE_TOKEN)  # the CLI's own rules: what it accepts, this accepts
    except SecretError as err:
        raise Problem(401, err.message, err.hint, "token_malformed") from err
    await ctx.keyring.update()
    try:
        try:
            claims = ctx.keyring.verify(normalized, issuer=ctx.settings.url, now=ctx.now())
        except TokenInvalid as err:
            if err.code != "unknown_key":
                raise
            await ctx.keyring.update(force=True)  # another replica or process may have just rotated
            claims = ctx.keyring.verify(normalized, issuer=ctx.settings.url, now=ctx.now())
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
    return claims, token, space


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
    await ctx.store.update_facts(space.id, checked_facts(req.facts), ctx.now())
    return m.AgentRegistration(space_id=space.id, space_name=space.name, owner=space.owner_email, state=space.state)


def _state(desired: DesiredState, reported: str, ssh: m.SshHealth | None) -> m.SpaceState:
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


async def heartbeat(ctx: Context, space: SpaceRecord, beat: m.Heartbeat) -> m.HeartbeatReply:
    """The agent is alive (or stopping): move the Space's state, hand over changed keys.

    The hot path of the broker (every agent, every interval): a steady heartbeat writes nothing
    and reuses the cached keys; only a change of state or facts reaches the database."""
    _same_instance(space, beat.instance_id)
    now = ctx.now()
    state = _state(space.desired_state, beat.state, beat.ssh)
    facts = None
    if beat.facts is not None:
        facts = msgspec.json.encode(beat.facts).decode()
        if facts != space.facts:  # only facts that changed cost a check
            facts = checked_facts(beat.facts)
    ssh = msgspec.json.encode(beat.ssh).decode() if beat.ssh else None
    if state in quotas.COMPUTE_STATES and space.state not in quotas.COMPUTE_STATES:
        space, state = await _start_within_quota(ctx, space, state, now)
    news = state != space.state or (ssh is not None and ssh != space.ssh)
    if news or (facts is not None and facts != space.facts):
        await ctx.store.heartbeat(space.id, state, now, facts, ssh)
        ctx.seen.pop(space.id, None)
        if state != space.state:
            await ctx.store.audit(now, f"agent:{space.id}", f"space.{state}", space.id)
        if news:
            await events.space_changed(ctx, space.id)  # a person's stream may be waiting for this
    else:
        ctx.seen[space.id] = now
    return await snapshots.reply_for(ctx, space, beat.keys_version)


async def _start_within_quota(
    ctx: Context, space: SpaceRecord, state: m.SpaceState, now: int
) -> tuple[SpaceRecord, m.SpaceState]:
    """A stopped Space whose agent reports it running again (its container came back) starts to
    use compute units: within the owner's quota it does; past it the broker asks the agent to
    stop sshd (desired `stopped`, as `down` does) and says why in the audit log. Either way one
    transaction, so racing starts cannot both slip under the limit."""
    async with ctx.transaction() as tx:
        try:
            await quotas.check(tx, space.owner_id, quotas.starting(space))
        except Problem as refused:
            await tx.store.set_desired_state(space.id, "stopped", "stopped", now)
            await tx.store.audit(now, f"agent:{space.id}", "space.quota_stop", space.id, refused.message)
        else:
            return space, state
    stopped = await ctx.store.space(space.id) or space
    await snapshots.push(ctx, stopped)
    return stopped, "stopped"


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
        await events.space_changed(ctx, space_id)  # a person waiting for it hears at once
    return stopped
