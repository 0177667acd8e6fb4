"""Groups: named sets of people that Spaces are shared with and that carry quotas (seed 001).

Admins create and remove groups and manage their members; an owner shares a Space with a group
(`broker.spaces.update_shares`). A membership change reaches live access at once: every Space
shared with the group gets a fresh snapshot pushed to its agent, and a removed member who can
no longer see a Space loses their open streams there (`spaces.revoke_lost`, as unshare does).
"""

from __future__ import annotations

from broker import access, credentials, spaces
from broker.context import Context, timestamp
from broker.errors import Problem, checked
from broker.store import Conflict, GroupRecord, Limits
from pair.api import models as m


def to_wire(group: GroupRecord) -> m.Group:
    q = group.quota
    return m.Group(
        name=group.name,
        members=list(group.members),
        quota=m.Limits(spaces=q.spaces, compute=q.compute, storage=q.storage),
        created_at=timestamp(group.created_at),
    )


async def add(ctx: Context, name: str, *, actor: str) -> GroupRecord:
    """A new, empty group without a quota; 422 for a bad name, 409 (`exists`) for a taken one."""
    checked(m.GroupName, name)
    group = GroupRecord(credentials.new_id("grp_"), name, ctx.now(), Limits())
    try:
        await ctx.store.create_group(group)
    except Conflict as exc:
        raise Problem(409, f"There is a group named {name!r} already.", "Pick another name.", "exists") from exc
    await ctx.store.audit(ctx.now(), actor, "group.add", name)
    return group


async def add_members(ctx: Context, name: str, emails: list[str], *, actor: str) -> GroupRecord:
    """Add people to the group (those in it stay); the group's Spaces let them in at once."""
    group = await access.group_by_name(ctx, name)
    people = await access.accounts_by_email(ctx, emails)
    async with ctx.transaction() as tx:
        await tx.store.add_group_members(group.id, [p.id for p in people], ctx.now())
        for person in people:
            await tx.store.audit(ctx.now(), actor, "group.member_add", name, person.email)
    for space in await ctx.store.spaces_shared_with_group(group.id):
        await spaces.revoke_lost(ctx, space, set(), "")  # new keys for the agent; nobody lost access
    return await access.group_by_name(ctx, name)


async def remove_members(ctx: Context, name: str, emails: list[str], *, actor: str) -> GroupRecord:
    """Take people out of the group: the group's Spaces they can no longer see drop their keys
    and end their open streams at once."""
    group = await access.group_by_name(ctx, name)
    people = await access.accounts_by_email(ctx, emails)
    shared = await ctx.store.spaces_shared_with_group(group.id)
    async with ctx.transaction() as tx:
        await tx.store.remove_group_members(group.id, [p.id for p in people])
        for person in people:
            await tx.store.audit(ctx.now(), actor, "group.member_remove", name, person.email)
    emails_out = {p.email for p in people}
    for space in shared:
        await spaces.revoke_lost(ctx, space, emails_out, f'You were taken out of the group "{name}".')
    return await access.group_by_name(ctx, name)


async def remove(ctx: Context, name: str, *, actor: str) -> None:
    """Remove the group: its shares and quota go, and its members lose what it gave them."""
    group = await access.group_by_name(ctx, name)
    shared = await ctx.store.spaces_shared_with_group(group.id)
    await ctx.store.remove_group(group.id)
    await ctx.store.audit(ctx.now(), actor, "group.remove", name)
    for space in shared:
        await spaces.revoke_lost(ctx, space, set(group.members), f'The group "{name}" was removed.')
