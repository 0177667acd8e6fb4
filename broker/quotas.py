"""Quotas (seed 001): limits on a person's Spaces, and where usage may grow.

A person has three limits: how many Spaces they own (running or stopped), the compute units of
their Spaces that are starting or running, and the storage units of all their Spaces. Each
user and each group may set any of them; "group quotas combine with user quotas. If a user
belongs to multiple groups, they get the sum of all quotas." Unset is not zero: a limit set
nowhere (neither the user's own nor any group of theirs) is unlimited, and where some are set,
the unset ones add nothing (`combine`). So a user with no own limit in a group of 6 may use 6;
with own 4 in that group, 10.

Usage only grows in three places, each of which checks here inside the transaction that makes
the change (`check`, which asks the store's `usage`, the store contract's quota lock, whenever a
limit bounds the change):
a new Space (`broker.spaces.authorize`: one more Space and its storage units), and a Space
starting to run (bootstrap, `up`, and an agent reporting a stopped Space running again: its
compute units). Shrinking needs no check, and a lowered limit refuses growth only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from broker import access, accounts, metrics
from broker.context import Context
from broker.errors import Problem, invalid
from broker.store import Limits, SpaceRecord, Usage, UserRecord
from pair.api import models as m

RESOURCES: tuple[m.QuotaResource, ...] = ("spaces", "compute", "storage")
UNITS = m.QUOTA_RESOURCE_NAMES
COMPUTE_STATES = ("starting", "running")  # the lifecycle states that use compute units (seed 001)
HINTS = {
    "compute": "Stop a running Space (`pair spaces down`) or delete one, or ask an admin for more; "
    "`pair quota` shows your limits.",
    "storage": "Delete a Space you no longer need (`pair spaces delete`), or ask an admin for more; "
    "`pair quota` shows your limits.",
}
HINTS["spaces"] = HINTS["storage"]


def combine(own: Limits, groups: Sequence[Limits]) -> Limits:
    """A person's limits from their own and their groups' (seed 001: the sum). Per resource:
    the sum of the limits that are set; None (unlimited) when none is."""

    def total(values: list[int | None]) -> int | None:
        chosen = [v for v in values if v is not None]
        return sum(chosen) if chosen else None

    everyone = [own, *groups]
    return Limits(
        spaces=total([q.spaces for q in everyone]),
        compute=total([q.compute for q in everyone]),
        storage=total([q.storage for q in everyone]),
    )


@dataclass(frozen=True)
class Need:
    """What a change adds to a person's usage, and how the refusal names it (`template large`)."""

    what: str
    spaces: int = 0
    compute: int = 0
    storage: int = 0


def excess(limits: Limits, usage: Usage, need: Need) -> tuple[m.QuotaResource, int, int, int] | None:
    """The first limit (Spaces, storage, compute) that `need` would take `usage` past, as
    (resource, limit, used, needed); None when it fits. Needing nothing always fits, even past a
    lowered limit."""
    for resource in RESOURCES:
        limit, used, needed = getattr(limits, resource), getattr(usage, resource), getattr(need, resource)
        if limit is not None and needed > 0 and used + needed > limit:
            return resource, limit, used, needed
    return None


def refusal(resource: m.QuotaResource, limit: int, used: int, needed: int, what: str) -> Problem:
    """403 `quota_exceeded`: "You are using 9 of 10 compute units; template large needs 3."."""
    return Problem(
        403,
        f"You are using {used} of {limit} {UNITS[resource]}; {what} needs {needed}.",
        HINTS[resource],
        "quota_exceeded",
    )


async def limits_of(ctx: Context, user_id: str) -> Limits:
    own, groups = await ctx.store.quotas_of(user_id)
    return combine(own, [q for _, q in groups])


async def check(ctx: Context, owner_id: str, need: Need) -> None:
    """Problem 403 (`quota_exceeded`) unless `need` fits the owner's limits. Call it inside the
    transaction that makes the change, before the change: the store's `usage` holds the owner's
    quota until that transaction ends. Each refusal counts in /metrics
    (`pair_broker_quota_refusals_total`, by the resource refused). When no limit bounds what
    `need` adds (the usual case: no quotas set), usage is not counted: nothing can be exceeded,
    and counting scans every Space of the owner's on each new one."""
    limits = await limits_of(ctx, owner_id)
    if all(getattr(limits, r) is None or getattr(need, r) <= 0 for r in RESOURCES):
        return
    usage = await ctx.store.usage(owner_id)
    over = excess(limits, usage, need)
    if over is not None:
        metrics.QUOTA_REFUSALS.labels(quota=over[0]).inc()  # the one place a quota refuses
        raise refusal(*over, "a new Space" if over[0] == "spaces" else need.what)


def space_label(template: str | None) -> str:
    return f"template {template}" if template else "this Space"


def new_space(template: str | None, storage_units: int) -> Need:
    """A new Space: one more Space and its storage (its compute only once it starts)."""
    return Need(space_label(template), spaces=1, storage=storage_units)


def starting(space: SpaceRecord) -> Need:
    """The Space starts to run: its compute units, unless it already uses them."""
    if space.state in COMPUTE_STATES:
        return Need(space_label(space.template))
    return Need(space_label(space.template), compute=space.compute_units)


async def report(ctx: Context, user: UserRecord) -> m.Quota:
    """`pair quota`: each limit, where it comes from, and the usage now."""
    own, groups = await ctx.store.quotas_of(user.id)
    usage = await ctx.store.usage(user.id)
    limits = combine(own, [q for _, q in groups])
    lines = []
    for resource in RESOURCES:
        mine = getattr(own, resource)
        sources = [m.QuotaSource(kind="user", name=user.email, limit=mine)] if mine is not None else []
        sources += [
            m.QuotaSource(kind="group", name=name, limit=getattr(q, resource))
            for name, q in groups
            if getattr(q, resource) is not None
        ]
        limit, used = getattr(limits, resource), getattr(usage, resource)
        lines.append(m.QuotaLine(resource=resource, limit=limit, used=used, sources=sources))
    return m.Quota(email=user.email, lines=lines)


MAX_LIMIT = 1_000_000
Changes = Mapping[m.QuotaResource, int | None]  # None: unset


def _changed(limits: Limits, changes: Changes) -> Limits:
    for resource, value in changes.items():
        if value is not None and not 0 <= value <= MAX_LIMIT:
            raise invalid(
                f"A {resource} limit must be a whole number from 0 to {MAX_LIMIT}.",
                "Pass `unlimited` to unset it.",
            )
    return dataclasses.replace(limits, **dict(changes))


async def set_for_user(ctx: Context, email: str, changes: Changes, *, actor: str) -> Limits:
    """Change the user's own limits named in `changes` (None unsets one); the others stay.
    Problem 404 for an unknown user, 422 for a limit out of range. Returns the new limits."""
    user = await accounts.user_by_email(ctx, email)
    async with ctx.transaction() as tx:
        own, _ = await tx.store.quotas_of(user.id)
        limits = _changed(own, changes)
        await tx.store.set_user_quota(user.id, limits)
        await tx.store.audit(ctx.now(), actor, "quota.set", user.email, describe(limits))
    return limits


async def set_for_group(ctx: Context, name: str, changes: Changes, *, actor: str) -> Limits:
    """As `set_for_user`, for a group (Problem 404 for an unknown group)."""
    group = await access.group_by_name(ctx, name)
    limits = _changed(group.quota, changes)
    await ctx.store.set_group_quota(group.id, limits)
    await ctx.store.audit(ctx.now(), actor, "quota.set", f"group:{name}", describe(limits))
    return limits


def describe(limits: Limits) -> str:
    """`spaces 3, compute 10, storage unlimited`."""
    return ", ".join(
        f"{resource} {'unlimited' if getattr(limits, resource) is None else getattr(limits, resource)}"
        for resource in RESOURCES
    )
