"""The authorized-keys snapshot: who may log in to a Space, as its agent keeps it for `pair verify`.

Built from the store (the owner's keys and those of everyone the Space is shared with), cached
per Space for the heartbeat's hot path, handed out in every heartbeat reply whose agent holds
another version, and pushed at once to a connected agent when it changes (a share, a key, up/down).
"""

from __future__ import annotations

import hashlib

import msgspec

from broker import access, events
from broker.context import Context
from broker.store import SpaceRecord
from pair.api import models as m

SNAPSHOT_CACHE_SECONDS = 5.0  # how stale keys changed by another process (an admin command) may be


async def authorized_keys(ctx: Context, space: SpaceRecord) -> m.AuthorizedKeys:
    """Everyone who may log in to the Space right now: the owner and the people it is shared with."""
    rows = await ctx.store.authorized_keys(space.id)
    facts = msgspec.json.decode(space.facts, type=m.ContainerFacts) if space.facts else m.ContainerFacts()
    keys = [m.AuthorizedKey(key=key, fingerprint=fp, email=email, role=role) for email, role, key, fp in rows]
    login_user = facts.login_user or "root"
    version = hashlib.sha256(msgspec.json.encode([login_user, keys])).hexdigest()[:16]
    return m.AuthorizedKeys(version=version, login_user=login_user, keys=keys)


async def cached_keys(ctx: Context, space: SpaceRecord, *, fresh: bool = False) -> m.AuthorizedKeys:
    """The snapshot, built at most every SNAPSHOT_CACHE_SECONDS unless `fresh` or changed (a
    change anywhere drops the cached copy of every process through the bus: `forget_keys`)."""
    hit = None if fresh else ctx.snapshots.get(space.id)
    if hit is not None and ctx.clock() - hit[0] < SNAPSHOT_CACHE_SECONDS:
        return hit[1]
    snapshot = await authorized_keys(ctx, space)
    ctx.snapshots[space.id] = (ctx.clock(), snapshot)
    return snapshot


async def forget_keys(ctx: Context, payload: bytes) -> None:
    """bus.SNAPSHOTS: the keys of the Space whose id is `payload` changed; drop the cached copy."""
    ctx.snapshots.pop(payload.decode(), None)


async def reply_for(
    ctx: Context, space: SpaceRecord, known_version: str = "", *, start_ssh: bool = False, fresh: bool = False
) -> m.HeartbeatReply:
    """What the agent is told: the desired state, its interval, and the snapshot (built afresh
    if `fresh`) unless it holds `known_version` already."""
    snapshot = await cached_keys(ctx, space, fresh=fresh)
    return m.HeartbeatReply(
        space_id=space.id,
        space_name=space.name,
        desired_state="stopped" if space.desired_state == "stopped" else "running",
        interval_seconds=ctx.settings.agent_interval,
        snapshot_max_age=ctx.settings.snapshot_max_age,
        authorized_keys=None if snapshot.version == known_version else snapshot,
        start_ssh=start_ssh,
        terminal_idle_seconds=ctx.settings.terminal_idle,
    )


async def push(ctx: Context, space: SpaceRecord, *, start_ssh: bool = False) -> None:
    """Tell the agent about new keys or a new desired state, wherever it is connected: through
    the bus (broker.events.push); the replica holding its channel sends the reply."""
    await events.push(ctx, space.id, start_ssh=start_ssh)


async def keys_changed(ctx: Context, user_id: str) -> None:
    """A person's SSH keys changed (`broker.accounts` announces it): every Space they can get
    into needs a new snapshot."""
    for space in await access.visible_spaces(ctx, user_id):
        await push(ctx, space)
