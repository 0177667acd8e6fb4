"""Access: who may see, change and share what. Every decision about a person's reach is made here.

The API, the web page and the relay ask these functions, never the store directly, so a rule
holds everywhere or nowhere; groups, quotas and access requests (issue 16) plug in here. A
Space a person may not see is answered 404, never 403, which would confirm that a guessed id
exists.
"""

from __future__ import annotations

from typing import Literal

from broker.context import Context
from broker.emails import normalize_email
from broker.errors import Problem, invalid, not_found
from broker.store import GroupRecord, SpaceRecord, UserRecord
from pair.api.grammar import is_space_id, shown


async def visible_spaces(ctx: Context, user_id: str) -> list[SpaceRecord]:
    """The live Spaces the user owns or that are shared with them, oldest first."""
    return await ctx.store.visible_spaces(user_id)


async def can_see(ctx: Context, user: UserRecord, space: SpaceRecord) -> bool:
    """Whether `user` may reach the live `space`: they own it, or it is shared with them directly
    or with a group of theirs."""
    return space.deleted_at is None and (space.owner_id == user.id or await ctx.store.is_shared_with(space.id, user.id))


async def get_visible(ctx: Context, user: UserRecord, space_id: str) -> SpaceRecord:
    """The Space, if `user` owns it or it is shared with them (directly or with a group of
    theirs); Problem 404 otherwise."""
    space = await ctx.store.space(space_id)
    if space is None or not await can_see(ctx, user, space):
        named = space_id if is_space_id(space_id) else shown(space_id)  # a web or WebSocket path: anything
        raise not_found(f"The Space {named}", "List the Spaces you can see with `pair spaces list`.")
    return space


async def get_owned(ctx: Context, user: UserRecord, space_id: str, action: str) -> SpaceRecord:
    """The Space, if `user` owns it: 404 if they cannot see it, 403 (`not_owner`) if they only
    share it. `action` completes "Only the owner … can ACTION it."."""
    space = await get_visible(ctx, user, space_id)
    if space.owner_id != user.id:
        raise Problem(
            403,
            f'Only the owner of "{space.name}" ({space.owner_email}) can {action} it.',
            "Ask them to do it.",
            "not_owner",
        )
    return space


async def may_reach(ctx: Context, space_id: str, email: str) -> bool:
    """Whether the person with `email` (an address, any case) owns the Space or it is shared
    with them (`get_visible`): whom its terminals' starters may grant the keyboard. False for
    an email that is no user's."""
    user = await ctx.store.user_by_email(email.lower())
    if user is None:
        return False
    try:
        await get_visible(ctx, user, space_id)
    except Problem:
        return False
    return True


def require_admin(user: UserRecord) -> None:
    """Problem 403 (`forbidden`) unless `user` is an admin of this broker."""
    if not user.is_admin:
        raise Problem(403, "This needs an admin account.", "Ask an admin of this broker.", "forbidden")


def may_share_with(owner: UserRecord, person: UserRecord) -> bool:
    """Whether `owner` may share a Space (or a Space key's Spaces) with `person`: any account of
    this broker but their own. The one rule behind `teammates` (the list people choose from) and
    `teammates_by_email` (what a share names)."""
    return person.id != owner.id


async def teammates(ctx: Context, user: UserRecord) -> list[UserRecord]:
    """The people `user` may share a Space with (`may_share_with`), by email."""
    return [u for u in await ctx.store.users() if may_share_with(user, u)]


# What an owner is told who names themselves among the people to share with: a Space, or a Space
# key (whose Spaces are theirs already).
OWN_EMAIL = {
    "space": "You own this Space; share it with other people.",
    "key": "You own this key and every Space it makes; share them with other people.",
}


async def accounts_by_email(ctx: Context, emails: list[str]) -> list[UserRecord]:
    """The accounts named by `emails` (each once, normalized, in the order named): Problem 422
    `unknown_user` naming every email without an account in one sentence. The one lookup behind a
    share and a group's members."""
    found, unknown = [], []
    for email in dict.fromkeys(normalize_email(e) for e in emails):
        user = await ctx.store.user_by_email(email)
        if user is None:
            unknown.append(email)
        else:
            found.append(user)
    if unknown:
        raise Problem(
            422,
            f"No account on this broker for {', '.join(unknown)}.",
            "Check the spelling, or ask an admin to create the account.",
            "unknown_user",
            admin_detail="Create it with `pair-broker users add EMAIL`, or check the spelling.",
        )
    return found


async def teammates_by_email(
    ctx: Context, owner: UserRecord, emails: list[str], *, of: Literal["space", "key"] = "space"
) -> list[UserRecord]:
    """The accounts `owner` shares with by naming `emails` (`accounts_by_email`), or Problem 422
    `invalid` for one `may_share_with` refuses (their own, in the words for what is shared: `of`)."""
    users = await accounts_by_email(ctx, emails)
    if not all(may_share_with(owner, user) for user in users):
        raise invalid(OWN_EMAIL[of], "Drop your own email from the list.")
    return users


async def may_open_port(ctx: Context, user: UserRecord | None, space: SpaceRecord, level: str) -> bool:
    """Whether `user` (None: a visitor who has not signed in) may open a port `space` shares at
    `level` (pair.api.models.PortLevel): `owner` the owner only; `shared` whoever sees the Space
    (`get_visible`, so every way a Space reaches people counts); `authenticated` any user of this
    broker; `public` anyone."""
    if level == "public":
        return True
    if user is None:
        return False
    if level == "authenticated":
        return True
    if level == "owner":
        return space.owner_id == user.id
    try:
        await get_visible(ctx, user, space.id)
    except Problem:
        return False
    return level == "shared"


async def group_by_name(ctx: Context, name: str) -> GroupRecord:
    """The group; Problem 404 (`not_found`) when there is none of that name. Anyone signed in may
    name a group to share with (as they may name any teammate)."""
    group = await ctx.store.group(name)
    if group is None:
        raise not_found(
            f"The group {name!r}",
            "Check its spelling, or ask an admin for the group's name.",
            admin_detail="List the groups with `pair-broker groups list`, or make it with `pair-broker groups add`.",
        )
    return group
