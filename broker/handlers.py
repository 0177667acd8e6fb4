"""One small function per JSON endpoint; the rules live in `accounts`, `access`, `spaces`, `agents`,
`streams` and `admin`. `ROUTES` binds each to its endpoint, and the type checker holds each
handler to its endpoint's request and response types."""

from __future__ import annotations

from broker import (
    access,
    access_requests,
    accounts,
    admin,
    agents,
    groups,
    ports,
    quotas,
    space_keys,
    spaces,
    streams,
    templates,
)
from broker.context import timestamp
from broker.http import Call, bind
from broker.terminals import listing as terminal_listing
from pair import __version__
from pair.api import endpoints as ep
from pair.api import models as m
from pair.api import terminal as tp


async def health(call: Call[None]) -> m.Health:
    if call.ctx.database.unavailable is not None:
        await call.ctx.database.check_writable()  # 503 until the database takes a write again
    await call.ctx.keyring.update()  # 503 while the signing keys do not open (broker.sealed_keys)
    return m.Health(status="ok", version=__version__)


async def login(call: Call[m.LoginRequest]) -> m.LoginResponse:
    req = call.body
    token, session, user = await accounts.login(call.ctx, req.email, req.auth_key, client=req.client)
    return m.LoginResponse(session_token=token, expires_at=timestamp(session.expires_at), user=accounts.user_wire(user))


async def logout(call: Call[None]) -> None:
    assert call.session is not None
    await accounts.logout(call.ctx, call.session, call.me)


async def me(call: Call[None]) -> m.User:
    return accounts.user_wire(call.me)


async def teammates(call: Call[None]) -> list[m.Teammate]:
    return [m.Teammate(email=u.email) for u in await access.teammates(call.ctx, call.me)]


async def admin_users(call: Call[None]) -> list[m.User]:
    return [accounts.user_wire(u) for u in await call.ctx.store.users()]


async def admin_add_user(call: Call[m.NewUserRequest]) -> m.UserWithKey:
    req = call.body
    user, key = await accounts.create_user(call.ctx, req.email, is_admin=req.is_admin, actor=call.me.email)
    return m.UserWithKey(user=accounts.user_wire(user), auth_key=key)


async def admin_remove_user(call: Call[None]) -> None:
    await admin.remove_user(call.ctx, call.params["email"], actor=call.me.email)


async def admin_reset_key(call: Call[None]) -> m.UserWithKey:
    user, key = await accounts.reset_key(call.ctx, call.params["email"], actor=call.me.email)
    return m.UserWithKey(user=accounts.user_wire(user), auth_key=key)


async def keys(call: Call[None]) -> list[m.SshKey]:
    return [accounts.key_wire(k) for k in await call.ctx.store.ssh_keys(call.me.id)]


async def add_key(call: Call[m.NewSshKeyRequest]) -> m.SshKey:
    req = call.body
    return accounts.key_wire(await accounts.add_ssh_key(call.ctx, call.me, req.public_key))


async def remove_key(call: Call[None]) -> None:
    await accounts.remove_ssh_key(call.ctx, call.me, call.params["key_id"])


async def list_spaces(call: Call[None]) -> list[m.Space]:
    return await spaces.visible(call.ctx, call.me)


async def get_space(call: Call[None]) -> m.Space:
    return await spaces.wire(call.ctx, call.me, await access.get_visible(call.ctx, call.me, call.params["space_id"]))


async def authorize(call: Call[m.AuthorizeRequest]) -> m.SpaceToken:
    return await spaces.authorize(call.ctx, call.me, call.body)


async def new_token(call: Call[m.NewTokenRequest]) -> m.SpaceToken:
    return await spaces.new_token(call.ctx, call.me, call.params["space_id"], call.body)


async def delete_space(call: Call[None]) -> None:
    await spaces.delete(call.ctx, call.me, call.params["space_id"])


async def share(call: Call[m.ShareUpdate]) -> m.Space:
    return await spaces.update_shares(call.ctx, call.me, call.params["space_id"], call.body)


async def bootstrap(call: Call[m.BootstrapRequest]) -> m.AgentRegistration:
    return await agents.bootstrap(call.ctx, call.body)


async def key_bootstrap(call: Call[m.KeyBootstrapRequest]) -> m.AgentRegistration:
    return await space_keys.bootstrap(call.ctx, call.body)


async def check_registration(call: Call[m.RegistrationCheck]) -> m.RegistrationCheckResult:
    req = call.body
    if req.kind == "space_key":
        return await space_keys.check(call.ctx, req.secret)
    return await agents.check(call.ctx, req.secret, req.instance_id)


async def list_space_keys(call: Call[None]) -> list[m.SpaceKey]:
    return await space_keys.listed(call.ctx, call.me)


async def create_space_key(call: Call[m.NewSpaceKeyRequest]) -> m.NewSpaceKey:
    return await space_keys.create(call.ctx, call.me, call.body)


async def revoke_space_key(call: Call[m.RevokeSpaceKeyRequest]) -> m.RevokedSpaceKey:
    return await space_keys.revoke(call.ctx, call.me, call.params["key_id"], call.body)


async def checkin(call: Call[m.AgentCheckin]) -> m.AgentRegistration:
    return await agents.checkin(call.ctx, call.agent_space, call.body)


async def heartbeat(call: Call[m.Heartbeat]) -> m.HeartbeatReply:
    return await agents.heartbeat(call.ctx, call.agent_space, call.body)


async def list_streams(call: Call[None]) -> list[m.StreamInfo]:
    return await streams.listing(call.ctx, call.me, call.params["space_id"])


async def kick(call: Call[None]) -> None:
    await streams.kick(call.ctx, call.me, call.params["space_id"], call.params["email"])


async def terminals(call: Call[None]) -> list[tp.TerminalInfo]:
    return await terminal_listing(call.ctx, call.me, call.params["space_id"])


async def up(call: Call[None]) -> m.Space:
    return await spaces.set_service(call.ctx, call.me, call.params["space_id"], up=True)


async def down(call: Call[None]) -> m.Space:
    return await spaces.set_service(call.ctx, call.me, call.params["space_id"], up=False)


async def space_ports(call: Call[None]) -> m.SpacePorts:
    return await ports.listing(call.ctx, call.me, call.params["space_id"])


async def share_port(call: Call[m.PortShare]) -> m.SharedPort:
    return await ports.share(call.ctx, call.me, call.params["space_id"], call.params["port"], call.body)


async def unshare_port(call: Call[None]) -> None:
    await ports.unshare(call.ctx, call.me, call.params["space_id"], call.params["port"])


async def quota(call: Call[None]) -> m.Quota:
    return await quotas.report(call.ctx, call.me)


async def list_templates(call: Call[None]) -> list[m.Template]:
    return [templates.to_wire(t) for t in await call.ctx.store.templates()]


async def admin_add_template(call: Call[m.Template]) -> m.Template:
    req = call.body
    made = await templates.add(
        call.ctx,
        req.name,
        compute=req.compute_units,
        storage=req.storage_units,
        default=req.is_default,
        description=req.description,
        actor=call.me.email,
    )
    return templates.to_wire(made)


async def admin_remove_template(call: Call[None]) -> None:
    await templates.remove(call.ctx, call.params["name"], actor=call.me.email)


async def admin_default_template(call: Call[None]) -> None:
    await templates.set_default(call.ctx, call.params["name"], actor=call.me.email)


async def admin_groups(call: Call[None]) -> list[m.Group]:
    return [groups.to_wire(g) for g in await call.ctx.store.groups()]


async def admin_add_group(call: Call[m.NewGroupRequest]) -> m.Group:
    req = call.body
    return groups.to_wire(await groups.add(call.ctx, req.name, actor=call.me.email))


async def admin_remove_group(call: Call[None]) -> None:
    await groups.remove(call.ctx, call.params["name"], actor=call.me.email)


async def admin_group_members(call: Call[m.GroupMembersUpdate]) -> m.Group:
    req = call.body
    name = call.params["name"]
    if req.add:
        await groups.add_members(call.ctx, name, req.add, actor=call.me.email)
    if req.remove:
        await groups.remove_members(call.ctx, name, req.remove, actor=call.me.email)
    return groups.to_wire(await access.group_by_name(call.ctx, name))


def _changes(limits: m.Limits) -> quotas.Changes:
    return {"spaces": limits.spaces, "compute": limits.compute, "storage": limits.storage}


async def admin_user_quota(call: Call[m.Limits]) -> m.Quota:
    user = await accounts.user_by_email(call.ctx, call.params["email"])
    await quotas.set_for_user(call.ctx, user.email, _changes(call.body), actor=call.me.email)
    return await quotas.report(call.ctx, user)


async def admin_group_quota(call: Call[m.Limits]) -> m.Group:
    await quotas.set_for_group(call.ctx, call.params["name"], _changes(call.body), actor=call.me.email)
    return groups.to_wire(await access.group_by_name(call.ctx, call.params["name"]))


async def access_request(call: Call[m.NewAccessRequest]) -> m.DeviceAuthorization:
    req = call.body
    return await access_requests.file(call.ctx, req.email, req.message, call.client_address)


async def access_request_token(call: Call[m.DeviceTokenRequest]) -> m.DeviceToken:
    req = call.body
    return await access_requests.poll(call.ctx, req.device_code)


async def admin_access_requests(call: Call[None]) -> list[m.AccessRequest]:
    found = await call.ctx.store.access_requests()
    pending_first = sorted(found, key=lambda r: (r.state != "pending", r.created_at))
    return [access_requests.to_wire(r) for r in pending_first]


async def admin_approve_request(call: Call[None]) -> m.AccessRequest:
    return await access_requests.approve(call.ctx, call.params["request_id"], actor=call.me.email)


async def admin_deny_request(call: Call[None]) -> m.AccessRequest:
    return await access_requests.deny(call.ctx, call.params["request_id"], actor=call.me.email)


ROUTES = [
    bind(ep.HEALTH, health),
    bind(ep.LOGIN, login),
    bind(ep.LOGOUT, logout),
    bind(ep.ME, me),
    bind(ep.TEAMMATES, teammates),
    bind(ep.ADMIN_USERS, admin_users),
    bind(ep.ADMIN_ADD_USER, admin_add_user),
    bind(ep.ADMIN_REMOVE_USER, admin_remove_user),
    bind(ep.ADMIN_RESET_KEY, admin_reset_key),
    bind(ep.KEYS, keys),
    bind(ep.ADD_KEY, add_key),
    bind(ep.REMOVE_KEY, remove_key),
    bind(ep.SPACES, list_spaces),
    bind(ep.SPACE, get_space),
    bind(ep.AUTHORIZE, authorize),
    bind(ep.NEW_TOKEN, new_token),
    bind(ep.DELETE_SPACE, delete_space),
    bind(ep.SHARE, share),
    bind(ep.SPACE_KEYS, list_space_keys),
    bind(ep.CREATE_SPACE_KEY, create_space_key),
    bind(ep.REVOKE_SPACE_KEY, revoke_space_key),
    bind(ep.BOOTSTRAP, bootstrap),
    bind(ep.KEY_BOOTSTRAP, key_bootstrap),
    bind(ep.CHECK_REGISTRATION, check_registration),
    bind(ep.CHECKIN, checkin),
    bind(ep.HEARTBEAT, heartbeat),
    bind(ep.STREAMS, list_streams),
    bind(ep.KICK, kick),
    bind(ep.TERMINALS, terminals),
    bind(ep.UP, up),
    bind(ep.DOWN, down),
    bind(ep.SPACE_PORTS, space_ports),
    bind(ep.SHARE_PORT, share_port),
    bind(ep.UNSHARE_PORT, unshare_port),
    bind(ep.QUOTA, quota),
    bind(ep.TEMPLATES, list_templates),
    bind(ep.ADMIN_TEMPLATES, admin_add_template),
    bind(ep.ADMIN_REMOVE_TEMPLATE, admin_remove_template),
    bind(ep.ADMIN_DEFAULT_TEMPLATE, admin_default_template),
    bind(ep.ADMIN_GROUPS, admin_groups),
    bind(ep.ADMIN_ADD_GROUP, admin_add_group),
    bind(ep.ADMIN_REMOVE_GROUP, admin_remove_group),
    bind(ep.ADMIN_GROUP_MEMBERS, admin_group_members),
    bind(ep.ADMIN_USER_QUOTA, admin_user_quota),
    bind(ep.ADMIN_GROUP_QUOTA, admin_group_quota),
    bind(ep.ACCESS_REQUEST, access_request),
    bind(ep.ACCESS_REQUEST_TOKEN, access_request_token),
    bind(ep.ADMIN_ACCESS_REQUESTS, admin_access_requests),
    bind(ep.ADMIN_APPROVE_REQUEST, admin_approve_request),
    bind(ep.ADMIN_DENY_REQUEST, admin_deny_request),
]
