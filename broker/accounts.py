"""Users, auth keys, sessions and SSH keys: the rules, independent of HTTP.

The admin commands (`pair-broker users …`) and the HTTP handlers call these same functions.
Removing a user, which also deletes their Spaces, is `broker.admin`'s; a change of someone's SSH
keys is announced (`Context.keys_changed`), and `broker.snapshots` pushes the new keys.
"""

from __future__ import annotations

from broker import credentials, metrics
from broker.context import Context, timestamp
from broker.emails import normalize_email
from broker.errors import Problem, invalid, not_found
from broker.store import Conflict, SessionRecord, SshKeyRecord, UserRecord
from pair import sshkeys
from pair.api import models as m
from pair.api.errors import login_hint


def user_wire(user: UserRecord) -> m.User:
    return m.User(id=user.id, email=user.email, is_admin=user.is_admin, created_at=timestamp(user.created_at))


async def user_by_email(ctx: Context, email: str) -> UserRecord:
    user = await ctx.store.user_by_email(normalize_email(email))
    if user is None:
        raise not_found(
            f"The user {email}", "Check the spelling.", admin_detail="List users with `pair-broker users list`."
        )
    return user


async def create_user(
    ctx: Context, email: str, *, is_admin: bool = False, actor: str = "admin"
) -> tuple[UserRecord, str]:
    user = UserRecord(credentials.new_id("usr_"), normalize_email(email), is_admin, ctx.now())
    auth_key = credentials.new_secret(credentials.AUTH_KEY)
    try:
        await ctx.store.create_user(user, credentials.digest(auth_key))
    except Conflict as exc:
        raise Problem(
            409,
            f"A user with the email {user.email} already exists.",
            "They sign in with the auth key they have.",
            "exists",
            admin_detail="Give them a new key with `pair-broker users reset-key EMAIL`.",
        ) from exc
    await ctx.store.audit(ctx.now(), actor, "user.create", user.email, "admin" if is_admin else "")
    return user, auth_key


async def reset_key(ctx: Context, email: str, *, actor: str = "admin") -> tuple[UserRecord, str]:
    user = await user_by_email(ctx, email)
    auth_key = credentials.new_secret(credentials.AUTH_KEY)
    await ctx.store.set_auth_key(user.id, credentials.digest(auth_key), ctx.now())
    await ctx.store.audit(ctx.now(), actor, "user.reset_key", user.email)
    return user, auth_key


# -- sessions -------------------------------------------------------------------------------


async def login(
    ctx: Context, email: str, auth_key: str, *, kind: str = "cli", client: str = ""
) -> tuple[str, SessionRecord, UserRecord]:
    """A session for the account `email` (as typed, surrounding white space ignored) whose auth key
    is `auth_key`: (its token, its row, the user). Problem 422 `invalid` for an email that is not
    an address (pair.api.models.Email's sentence: it can name no account); 401 `bad_credentials`
    for a key that is not that account's, in the same words whether or not the email has an
    account, so that an answer never tells who has one."""
    email = normalize_email(email.strip())
    user = await ctx.store.user_by_auth_key(credentials.digest(auth_key.strip()))
    if user is None or user.email != email:
        raise Problem(
            401,
            "That email and auth key do not match an account on this broker.",
            "Check the key file your admin gave you; if it is lost, ask your admin for a new key.",
            "bad_credentials",
        )
    token, session = await start_session(ctx, user, kind=kind, client=client)
    return token, session, user


async def start_session(ctx: Context, user: UserRecord, *, kind: str, client: str = "") -> tuple[str, SessionRecord]:
    """A new session for `user`: after an auth key (`login`) or a one-time web link. Web sessions
    (kind "web", a browser's cookie) live PAIR_BROKER_WEB_SESSION_TTL, others PAIR_BROKER_SESSION_TTL."""
    now = ctx.now()
    ttl = ctx.settings.web_session_ttl if kind == "web" else ctx.settings.session_ttl
    token = credentials.new_secret(credentials.SESSION)
    session = SessionRecord(credentials.new_id("ses_"), user.id, kind, client[:200], now, now + ttl, now)
    await ctx.store.create_session(session, credentials.digest(token))
    await ctx.store.audit(now, user.email, "session.create", session.id, kind)
    metrics.TOKENS_ISSUED.labels("session").inc()
    return token, session


async def authenticate(ctx: Context, token: str) -> tuple[SessionRecord, UserRecord]:
    now = ctx.now()
    found = await ctx.store.session_by_token(credentials.digest(token), now) if token else None
    if found is None:
        raise Problem(
            401, "You are not signed in, or your session has expired.", login_hint(ctx.settings.url), "unauthenticated"
        )
    session, user = found
    if now - session.last_used_at >= 60:  # one write a minute at most, not one per request
        await ctx.store.touch_session(session.id, now)
    return session, user


async def logout(ctx: Context, session: SessionRecord, user: UserRecord) -> None:
    await ctx.store.revoke_session(session.id, ctx.now())
    await ctx.store.audit(ctx.now(), user.email, "session.revoke", session.id)


# -- SSH keys -------------------------------------------------------------------------------


def key_wire(key: SshKeyRecord) -> m.SshKey:
    return m.SshKey(
        id=key.id,
        fingerprint=key.fingerprint,
        key_type=key.key_type,
        bits=key.bits,
        comment=key.comment,
        created_at=timestamp(key.created_at),
    )


async def add_ssh_key(ctx: Context, user: UserRecord, text: str) -> SshKeyRecord:
    try:
        parsed = sshkeys.parse_public_key(text)
    except sshkeys.InvalidKeyError as exc:
        raise invalid(exc.message, exc.hint) from exc
    key = SshKeyRecord(
        credentials.new_id("key_"),
        user.id,
        parsed.fingerprint,
        parsed.key_type,
        parsed.bits,
        parsed.openssh(),
        parsed.comment[:200],
        ctx.now(),
    )
    try:
        await ctx.store.add_ssh_key(key)
    except Conflict as exc:
        mine = any(k.fingerprint == key.fingerprint for k in await ctx.store.ssh_keys(user.id))
        raise Problem(
            409,
            f"The key {key.fingerprint} is already registered"
            + (" to your account." if mine else " to another account."),
            "" if mine else "Each person needs their own key pair: `ssh-keygen -t ed25519`.",
            "exists",
        ) from exc
    await ctx.store.audit(ctx.now(), user.email, "key.add", key.fingerprint)
    await ctx.announce_keys_changed(user.id)
    return key


async def remove_ssh_key(ctx: Context, user: UserRecord, key_id: str) -> None:
    if not await ctx.store.remove_ssh_key(user.id, key_id):
        raise not_found("That SSH key", "List your keys with `pair keys list`.")
    await ctx.store.audit(ctx.now(), user.email, "key.remove", key_id)
    await ctx.announce_keys_changed(user.id)
