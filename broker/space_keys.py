"""Reusable Space keys: an owner's key that lets any container register itself as its own Space.

A key is meant for a secret store (the Codespaces secret PAIR_SPACE_KEY): every container that
bootstraps with it becomes a Space owned by the key's creator, named after the container
(CODESPACE_NAME, DEVWORKSPACE_NAME, else its host name) and shared with the key's people. The
same container again (the same container name, with the same key) comes back as the same live
Space, on a new agent credential. The key can do nothing else: it is not a session, it reads
nothing, and it never reaches a Space it did not make. The broker keeps only its SHA-256.
docs/tokens.md describes its format, docs/operations.md what a leaked one allows.
"""

from __future__ import annotations

from broker import access, agents, credentials, quotas, snapshots, templates
from broker.context import Context, timestamp
from broker.errors import Problem
from broker.spaces import created_detail, delete, new_space
from broker.store import Conflict, SpaceKeyRecord, SpaceRecord, TemplateRecord, UserRecord
from pair.api import models as m
from pair.api.grammar import container_identity
from pair.api.tokens import SPACE_KEY, SecretError, normalize, space_key

NAME_ATTEMPTS = 20  # `name`, then `name-2` … when the owner has other Spaces of that name


def _state(key: SpaceKeyRecord, now: int) -> m.SpaceKeyState:
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    return "active"


def _wire(key: SpaceKeyRecord, shares: list[str], spaces: list[str], now: int, templates: set[str]) -> m.SpaceKey:
    """The key as its owner sees it; `templates`: the names of the templates the broker has."""
    return m.SpaceKey(
        id=key.id,
        name=key.name,
        state=_state(key, now),
        share_with=shares,
        created_at=timestamp(key.created_at),
        expires_at=timestamp(key.expires_at) if key.expires_at is not None else None,
        revoked_at=timestamp(key.revoked_at) if key.revoked_at is not None else None,
        uses=key.uses,
        last_used_at=timestamp(key.last_used_at) if key.last_used_at is not None else None,
        spaces=spaces,
        template=key.template,
        template_removed=key.template is not None and key.template not in templates,
    )


async def _template_names(ctx: Context) -> set[str]:
    return {t.name for t in await ctx.store.templates()}


async def _wired(ctx: Context, key: SpaceKeyRecord) -> m.SpaceKey:
    shares = await ctx.store.space_key_shares([key.id])
    made = [s.name for s in await ctx.store.spaces_of_key(key.id)]
    return _wire(key, shares[key.id], made, ctx.now(), await _template_names(ctx))


async def listed(ctx: Context, user: UserRecord) -> list[m.SpaceKey]:
    keys = await ctx.store.space_keys(user.id)
    shares = await ctx.store.space_key_shares([k.id for k in keys])
    now, names = ctx.now(), await _template_names(ctx)
    return [_wire(k, shares[k.id], [s.name for s in await ctx.store.spaces_of_key(k.id)], now, names) for k in keys]


async def create(ctx: Context, user: UserRecord, req: m.NewSpaceKeyRequest) -> m.NewSpaceKey:
    """A new key of `user`'s; its secret is in the answer and nowhere else. Its template is
    checked as `pair spaces authorize` checks one (templates.resolve: Problem 404 for a name the
    broker lacks, 409 when it has templates but no default and none is named) and kept by name;
    none named keeps None, the default at each registration."""
    template = await templates.resolve(ctx, req.template)
    people = await access.teammates_by_email(ctx, user, req.share_with, of="key")
    now = ctx.now()
    secret = space_key(ctx.settings.url, credentials.new_secret(""))
    expires_at = now + req.expires_in_seconds if req.expires_in_seconds is not None else None
    key = SpaceKeyRecord(
        credentials.new_id("sk_"),
        user.id,
        req.name,
        credentials.digest(secret),
        now,
        expires_at,
        template=template.name if template is not None and req.template is not None else None,
    )
    try:
        await ctx.store.create_space_key(key, [p.id for p in people])
    except Conflict as exc:
        raise Problem(
            409,
            f'You already have a Space key named "{req.name}".',
            f"Pick another --name, or revoke it first with `pair spaces keys revoke {req.name}`.",
            "exists",
        ) from exc
    made_of = f"template {key.template}" if key.template is not None else "the default template"  # at each registration
    await ctx.store.audit(now, user.email, "space_key.create", key.id, f"{key.name}, {made_of}")
    made = {template.name} if template is not None else set()  # just resolved: it exists
    return m.NewSpaceKey(key=_wire(key, sorted(p.email for p in people), [], now, made), space_key=secret)


async def revoke(ctx: Context, user: UserRecord, key_id: str, req: m.RevokeSpaceKeyRequest) -> m.RevokedSpaceKey:
    """No container registers with the key any more; with `delete_spaces`, the Spaces it made
    are deleted too (their agents' credentials die). Containers it registered keep working
    otherwise: they hold their own credential, not the key."""
    key = next((k for k in await ctx.store.space_keys(user.id) if k.id == key_id), None)
    if key is None:
        raise Problem(404, f"You have no Space key {key_id}.", "List yours with `pair spaces keys list`.", "not_found")
    now = ctx.now()
    await ctx.store.revoke_space_key(key.id, now)
    await ctx.store.audit(now, user.email, "space_key.revoke", key.id, key.name)
    deleted = []
    if req.delete_spaces:
        for space in await ctx.store.spaces_of_key(key.id):
            await delete(ctx, user, space.id)
            deleted.append(space.name)
    fresh = next(k for k in await ctx.store.space_keys(user.id) if k.id == key_id)
    return m.RevokedSpaceKey(key=await _wired(ctx, fresh), deleted_spaces=deleted)


def _refused(key: SpaceKeyRecord, owner: str, now: int) -> Problem | None:
    ask = f"Ask its owner ({owner}) for a new key (`pair spaces keys create`), then rebuild the container."
    if key.revoked_at is not None:
        when = timestamp(key.revoked_at).strftime("%Y-%m-%d %H:%M UTC")
        return Problem(
            401,
            f'The Space key "{key.name}" was revoked at {when}: it registers no new containers.',
            ask,
            "space_key_revoked",
        )
    if key.expires_at is not None and key.expires_at <= now:
        when = timestamp(key.expires_at).strftime("%Y-%m-%d %H:%M UTC")
        return Problem(
            401,
            f'The Space key "{key.name}" expired at {when}: it registers no new containers.',
            ask,
            "space_key_expired",
        )
    return None


def _digest(pasted: str) -> str:
    """The stored form of a key as pasted (normalized as the CLI does); 401 space_key_malformed
    with the cause if it is no key."""
    try:
        return credentials.digest(normalize(pasted, SPACE_KEY))
    except SecretError as err:
        raise Problem(401, err.message, err.hint, "space_key_malformed") from err


async def _usable(ctx: Context, key_hash: str, now: int) -> tuple[SpaceKeyRecord, UserRecord]:
    """The key with that hash and its owner, if it registers containers now; else the Problem
    bootstrap answers (unknown, revoked, expired)."""
    key = await ctx.store.space_key_by_hash(key_hash)
    if key is None:
        raise Problem(
            401,
            "This broker does not know that Space key.",
            "It belongs to another broker, or its owner's account was removed. "
            "Ask the owner for a new one (`pair spaces keys create`).",
            "space_key_unknown",
        )
    owner = next((u for u in await ctx.store.users() if u.id == key.owner_id), None)
    assert owner is not None  # a key goes with its owner's account (ON DELETE CASCADE)
    refused = _refused(key, owner.email, now)
    if refused is not None:
        raise refused
    return key, owner


async def check(ctx: Context, pasted: str) -> m.RegistrationCheckResult:
    """Whether the Space key `pasted` registers containers now: raises the Problem bootstrap
    would raise (malformed, unknown, revoked, expired), else names the key and its owner. Nothing
    is used or recorded (no use, no last use). (The owner's quota is bootstrap's to judge: it
    depends on whether the container is new, and may change before then.)"""
    key, owner = await _usable(ctx, _digest(pasted), ctx.now())
    return m.RegistrationCheckResult(owner=owner.email, space_key_name=key.name)


async def bootstrap(ctx: Context, req: m.KeyBootstrapRequest) -> m.AgentRegistration:
    """Register the container as its own Space with a Space key: the live Space the key made
    for this container (a rebuild of it: the same raw name, pair.api.grammar.container_identity),
    else a new one named `container_name` (with
    `-2`, `-3` … when the owner has another Space of that name). Either way it is shared with
    the key's people (on top of any sharing its owner did since) and gets a new agent
    credential, which the container keeps instead of the key. A new Space is made from the key's
    template, or the default one when the key names none (`_template`: refused, 409, when that
    template was removed, or when there is no default); the owner's quota holds as for
    `pair spaces authorize` and a bootstrap (a new Space, then its compute units), and a refusal
    leaves nothing made and the key unused. A rebuilt container's Space keeps what it was made of."""
    facts = agents.checked_facts(req.facts)
    key_hash = _digest(req.space_key)
    credential = credentials.new_secret(credentials.AGENT)
    now = ctx.now()
    async with ctx.transaction() as tx:
        key, owner = await _usable(tx, key_hash, now)
        people = await tx.store.space_key_user_ids(key.id)
        container = container_identity(req.container_name, req.container_digest)  # the raw name's
        space = await tx.store.space_for_container(key.id, container)
        if space is None:  # a new Space, of the key's template (or the default), within the owner's quota
            template = await _template(tx, key, owner)
            storage = template.storage_units if template else 0
            await quotas.check(tx, owner.id, quotas.new_space(template.name if template else None, storage))
            space = await _create(tx, key, owner, req.container_name, container, people, now, template)
            await tx.store.audit(now, f"key:{key.id}", "space.create", space.id, created_detail(space))
        elif people:
            await tx.store.update_shares(space.id, people, [], now)
        await quotas.check(tx, owner.id, quotas.starting(space))  # it starts to run, as a bootstrap does
        await tx.store.register_keyed_agent(
            key.id, space.id, req.instance_id, facts, credentials.digest(credential), now
        )
        await tx.store.audit(now, f"key:{key.id}", "space.bootstrap", space.id, req.container_name)
    await snapshots.push(ctx, space)  # an earlier container's agent, if still there, hears its keys anew
    return m.AgentRegistration(
        space_id=space.id, space_name=space.name, owner=owner.email, state="starting", agent_credential=credential
    )


async def _template(ctx: Context, key: SpaceKeyRecord, owner: UserRecord) -> TemplateRecord | None:
    """What a new Space of `key` is made from: the template the key names, else the broker's
    default (None: the broker has no templates). A template removed since the key was made is
    not replaced by another (its owner chose what its Spaces cost): Problem 409
    `unknown_template` naming it, as for a broker with templates but no default, in words for
    the person whose container it is."""
    ask = f"Ask the key's owner ({owner.email}) for a key"
    if key.template is None:
        try:
            return await templates.resolve(ctx, None)
        except Problem as exc:  # templates, but no default
            have = templates.listing(await ctx.store.templates())
            raise Problem(
                409,
                f'This broker has no default template, and the Space key "{key.name}" names none.',
                f"{ask} that names one (`pair spaces keys create --template NAME`; this broker has {have}), "
                "or an admin to set a default.",
                "unknown_template",
            ) from exc
    found = await ctx.store.template(key.template)
    if found is None:
        available = templates.listing(await ctx.store.templates())
        other = (
            f"that names another (`pair spaces keys create --template NAME`; this broker has {available})"
            if available
            else "without --template (this broker has no templates now)"
        )
        raise Problem(
            409,
            f'The Space key "{key.name}" makes Spaces from the template {key.template!r}, '
            "which this broker no longer has.",
            f"{ask} {other}, or an admin to add {key.template!r} again.",
            "unknown_template",
        )
    return found


async def _create(
    ctx: Context,
    key: SpaceKeyRecord,
    owner: UserRecord,
    wanted: str,
    container: str,
    people: list[str],
    now: int,
    template: TemplateRecord | None,
) -> SpaceRecord:
    """A new Space for the container `container` (its identity), named `wanted` or `wanted-N`, each
    name tried in a savepoint (a Conflict aborts only it)."""
    for attempt in range(NAME_ATTEMPTS):
        name = wanted if attempt == 0 else f"{wanted[: 63 - len(str(attempt + 1)) - 1]}-{attempt + 1}"
        space = new_space(owner, name, now, template, space_key_id=key.id, container_name=container)
        try:
            async with ctx.transaction() as attempt_tx:
                await attempt_tx.store.create_space(space, people)
        except Conflict as exc:
            if exc.rule == "spaces.container":  # the same container, registered a moment ago
                found = await ctx.store.space_for_container(key.id, container)
                if found is not None:
                    return found
            continue
        return space
    raise Problem(  # pragma: no cover - the owner has 20 Spaces named after this container
        409,
        f'{owner.email} has too many Spaces named after "{wanted}".',
        "Delete some with `pair spaces delete`, or give the container another name.",
        "exists",
    )
