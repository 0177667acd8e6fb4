"""One small function per JSON endpoint; the rules live in `accounts`, `access`, `spaces`, `agents`,
`streams` and `admin`."""

from __future__ import annotations

from broker import access, accounts, admin, agents, ports, spaces, streams
from broker.context import timestamp
from broker.http import Call, Handler
from pair import __version__
from pair.api import endpoints as ep
from pair.api import models as m
from pair.api import terminal as tp


async def health(call: Call) -> m.Health:
    if call.ctx.database.unavailable is not None:
        await call.ctx.database.check_writable()  # 503 until the database takes a write again
    return m.Health(status="ok", version=__version__)


async def login(call: Call) -> m.LoginResponse:
    req: m.LoginRequest = call.body
    token, session, user = await accounts.login(call.ctx, req.email, req.auth_key, client=req.client)
    return m.LoginResponse(session_token=token, expires_at=timestamp(session.expires_at), user=accounts.user_wire(user))


async def logout(call: Call) -> None:
    assert call.session is not None
    await accounts.logout(call.ctx, call.session, call.me)


async def me(call: Call) -> m.User:
    return accounts.user_wire(call.me)


async def teammates(call: Call) -> list[m.Teammate]:
    return [m.Teammate(email=u.email) for u in await access.teammates(call.ctx, call.me)]


async def admin_users(call: Call) -> list[m.User]:
    return [accounts.user_wire(u) for u in await call.ctx.store.users()]


async def admin_add_user(call: Call) -> m.UserWithKey:
    req: m.NewUserRequest = call.body
    user, key = await accounts.create_user(call.ctx, req.email, is_admin=req.is_admin, actor=call.me.email)
    return m.UserWithKey(user=accounts.user_wire(user), auth_key=key)


async def admin_remove_user(call: Call) -> None:
    await admin.remove_user(call.ctx, call.params["email"], actor=call.me.email)


async def admin_reset_key(call: Call) -> m.UserWithKey:
    user, key = await accounts.reset_key(call.ctx, call.params["email"], actor=call.me.email)
    return m.UserWithKey(user=accounts.user_wire(user), auth_key=key)


async def keys(call: Call) -> list[m.SshKey]:
    return [accounts.key_wire(k) for k in await call.ctx.store.ssh_keys(call.me.id)]


async def add_key(call: Call) -> m.SshKey:
    req: m.NewSshKeyRequest = call.body
    return accounts.key_wire(await accounts.add_ssh_key(call.ctx, call.me, req.public_key))


async def remove_key(call: Call) -> None:
    await accounts.remove_ssh_key(call.ctx, call.me, call.params["key_id"])


async def list_spaces(call: Call) -> list[m.Space]:
    return await spaces.visible(call.ctx, call.me)


async def get_space(call: Call) -> m.Space:
    return await spaces.wire(call.ctx, call.me, await access.get_visible(call.ctx, call.me, call.params["space_id"]))


async def authorize(call: Call) -> m.SpaceToken:
    return await spaces.authorize(call.ctx, call.me, call.body)


async def new_token(call: Call) -> m.SpaceToken:
    return await spaces.new_token(call.ctx, call.me, call.params["space_id"], call.body)


async def delete_space(call: Call) -> None:
    await spaces.delete(call.ctx, call.me, call.params["space_id"])


async def share(call: Call) -> m.Space:
    return await spaces.update_shares(call.ctx, call.me, call.params["space_id"], call.body)


async def bootstrap(call: Call) -> m.AgentRegistration:
    return await agents.bootstrap(call.ctx, call.body)


async def checkin(call: Call) -> m.AgentRegistration:
    return await agents.checkin(call.ctx, call.agent_space, call.body)


async def heartbeat(call: Call) -> m.HeartbeatReply:
    return await agents.heartbeat(call.ctx, call.agent_space, call.body)


async def sessions(call: Call) -> list[m.TunnelSession]:
    return await streams.sessions(call.ctx, call.me, call.params["space_id"])


async def kick(call: Call) -> None:
    await streams.kick(call.ctx, call.me, call.params["space_id"], call.params["email"])


async def terminals(call: Call) -> list[tp.TerminalInfo]:
    return await streams.terminals(call.ctx, call.me, call.params["space_id"])


async def up(call: Call) -> m.Space:
    return await spaces.set_service(call.ctx, call.me, call.params["space_id"], up=True)


async def down(call: Call) -> m.Space:
    return await spaces.set_service(call.ctx, call.me, call.params["space_id"], up=False)


async def space_ports(call: Call) -> m.SpacePorts:
    return await ports.listing(call.ctx, call.me, call.params["space_id"])


async def share_port(call: Call) -> m.SharedPort:
    return await ports.share(call.ctx, call.me, call.params["space_id"], call.params["port"], call.body)


async def unshare_port(call: Call) -> None:
    await ports.unshare(call.ctx, call.me, call.params["space_id"], call.params["port"])


HANDLERS: dict[ep.Endpoint, Handler] = {
    ep.HEALTH: health,
    ep.LOGIN: login,
    ep.LOGOUT: logout,
    ep.ME: me,
    ep.TEAMMATES: teammates,
    ep.ADMIN_USERS: admin_users,
    ep.ADMIN_ADD_USER: admin_add_user,
    ep.ADMIN_REMOVE_USER: admin_remove_user,
    ep.ADMIN_RESET_KEY: admin_reset_key,
    ep.KEYS: keys,
    ep.ADD_KEY: add_key,
    ep.REMOVE_KEY: remove_key,
    ep.SPACES: list_spaces,
    ep.SPACE: get_space,
    ep.AUTHORIZE: authorize,
    ep.NEW_TOKEN: new_token,
    ep.DELETE_SPACE: delete_space,
    ep.SHARE: share,
    ep.BOOTSTRAP: bootstrap,
    ep.CHECKIN: checkin,
    ep.HEARTBEAT: heartbeat,
    ep.SESSIONS: sessions,
    ep.KICK: kick,
    ep.TERMINALS: terminals,
    ep.UP: up,
    ep.DOWN: down,
    ep.SPACE_PORTS: space_ports,
    ep.SHARE_PORT: share_port,
    ep.UNSHARE_PORT: unshare_port,
}
