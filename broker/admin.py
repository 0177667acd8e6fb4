"""What only an admin does that reaches across rooms: removing a user, with every Space they own.

Above `broker.accounts` and `broker.spaces`, so that neither needs the other.
"""

from __future__ import annotations

from broker import access, accounts, events, snapshots, spaces
from broker.context import Context
from broker.store import UserRecord


async def remove_user(ctx: Context, email: str, *, actor: str = "admin") -> UserRecord:
    """Remove the account of `email`: the Spaces they own are deleted first (through the one path
    that ends their streams and tells their agents), then the user, their sessions and keys.
    In the Spaces shared with them, their open streams end and the agent gets a snapshot
    without their keys. Problem 404 if there is no such user."""
    user = await accounts.user_by_email(ctx, email)
    visible = await access.visible_spaces(ctx, user.id)
    for space_id in [s.id for s in visible if s.owner_id == user.id]:
        await spaces.delete(ctx, user, space_id, actor=actor)
    await ctx.store.remove_user(user.id, ctx.now())
    await ctx.store.audit(ctx.now(), actor, "user.remove", user.email)
    for space in visible:  # they are gone from the Spaces shared with them: their keys, their streams
        if space.owner_id != user.id:
            await snapshots.push(ctx, space)
            await events.end_streams(ctx, space.id, f"The account {user.email} was removed.", people=[user])
    return user
