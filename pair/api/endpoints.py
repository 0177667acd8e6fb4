"""Every JSON endpoint of the broker, in one table.

The client calls them, the broker binds a handler to each, and /openapi.json is generated from
them, so the three cannot disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from pair.api import models as m
from pair.api import terminal as tp

Auth = Literal["none", "session", "admin", "agent"]
Req = TypeVar("Req")  # the request body's type; None: the endpoint takes no body
Resp = TypeVar("Resp")  # the response body's type; None: 204 No Content


@dataclass(frozen=True)
class Endpoint(Generic[Req, Resp]):
    """One JSON endpoint. Its type parameters are its bodies' types, so `Client.call` returns
    what the endpoint answers and the type checker holds every call to it."""

    method: str
    path: str
    summary: str
    auth: Auth
    request: type[Req] | None = None  # a msgspec type, or None for no body
    response: type[Resp] | None = None  # a msgspec type, or None for 204 No Content
    tag: str = ""
    # Path parameters whose type is not PATH_PARAMETERS' for their name (`name`: a template's or
    # a group's; `key_id`: an SSH key's or a Space key's).
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def status(self) -> int:
        return 204 if self.response is None else 200

    def path_types(self) -> dict[str, Any]:
        """Each path parameter's wire type (pair.api.models): what the broker accepts there,
        checked before the handler runs (pair.api.fields.check_path), stated in /openapi.json."""
        own = dict(self.params)
        return {p: own.get(p, PATH_PARAMETERS.get(p, str)) for p in re.findall(r"{(\w+)}", self.path)}


# The type of a path parameter, by its name (an endpoint's `params` may say otherwise).
PATH_PARAMETERS: dict[str, Any] = {
    "email": m.Email,
    "port": m.Port,
    "space_id": m.SpaceId,
    "request_id": m.AccessRequestId,
}
TEMPLATE_PARAMS = (("name", m.TemplateName),)
GROUP_PARAMS = (("name", m.GroupName),)


API = "/api/v1"

HEALTH: Endpoint[None, m.Health] = Endpoint(
    "GET", "/healthz", "Liveness and version.", "none", response=m.Health, tag="meta"
)

LOGIN: Endpoint[m.LoginRequest, m.LoginResponse] = Endpoint(
    "POST",
    f"{API}/login",
    "Exchange an email and auth key for a session.",
    "none",
    m.LoginRequest,
    m.LoginResponse,
    "accounts",
)
LOGOUT: Endpoint[None, None] = Endpoint(
    "POST", f"{API}/logout", "Revoke the calling session.", "session", tag="accounts"
)
ME: Endpoint[None, m.User] = Endpoint(
    "GET", f"{API}/me", "The signed-in user.", "session", response=m.User, tag="accounts"
)
TEAMMATES: Endpoint[None, list[m.Teammate]] = Endpoint(
    "GET",
    f"{API}/teammates",
    "Every other active user, to share Spaces with.",
    "session",
    response=list[m.Teammate],
    tag="accounts",
)
WEB_LINK: Endpoint[None, m.WebLink] = Endpoint(
    "POST",
    f"{API}/web-links",
    "A one-time link (valid for minutes) that signs a browser in to the web page as you.",
    "session",
    response=m.WebLink,
    tag="accounts",
)

ADMIN_USERS: Endpoint[None, list[m.User]] = Endpoint(
    "GET", f"{API}/admin/users", "All users (admin).", "admin", response=list[m.User], tag="admin"
)
ADMIN_ADD_USER: Endpoint[m.NewUserRequest, m.UserWithKey] = Endpoint(
    "POST",
    f"{API}/admin/users",
    "Create a user and their auth key (admin).",
    "admin",
    m.NewUserRequest,
    m.UserWithKey,
    "admin",
)
ADMIN_REMOVE_USER: Endpoint[None, None] = Endpoint(
    "DELETE",
    f"{API}/admin/users/{{email}}",
    "Remove a user and delete their Spaces (admin).",
    "admin",
    tag="admin",
)
ADMIN_RESET_KEY: Endpoint[None, m.UserWithKey] = Endpoint(
    "POST",
    f"{API}/admin/users/{{email}}/reset-key",
    "Replace a user's auth key and end their sessions (admin).",
    "admin",
    response=m.UserWithKey,
    tag="admin",
)

KEYS: Endpoint[None, list[m.SshKey]] = Endpoint(
    "GET", f"{API}/keys", "Your SSH public keys.", "session", response=list[m.SshKey], tag="keys"
)
ADD_KEY: Endpoint[m.NewSshKeyRequest, m.SshKey] = Endpoint(
    "POST", f"{API}/keys", "Add an SSH public key.", "session", m.NewSshKeyRequest, m.SshKey, "keys"
)
REMOVE_KEY: Endpoint[None, None] = Endpoint(
    "DELETE",
    f"{API}/keys/{{key_id}}",
    "Remove an SSH public key.",
    "session",
    tag="keys",
    params=(("key_id", m.SshKeyId),),
)

SPACES: Endpoint[None, list[m.Space]] = Endpoint(
    "GET",
    f"{API}/spaces",
    "Spaces you own or that are shared with you.",
    "session",
    response=list[m.Space],
    tag="spaces",
)
AUTHORIZE: Endpoint[m.AuthorizeRequest, m.SpaceToken] = Endpoint(
    "POST",
    f"{API}/spaces",
    "Create a Space and issue its bootstrap token.",
    "session",
    m.AuthorizeRequest,
    m.SpaceToken,
    "spaces",
)
SPACE: Endpoint[None, m.Space] = Endpoint(
    "GET", f"{API}/spaces/{{space_id}}", "One Space.", "session", response=m.Space, tag="spaces"
)
DELETE_SPACE: Endpoint[None, None] = Endpoint(
    "DELETE",
    f"{API}/spaces/{{space_id}}",
    "Delete a Space: its tokens and agent credential die.",
    "session",
    tag="spaces",
)
NEW_TOKEN: Endpoint[m.NewTokenRequest, m.SpaceToken] = Endpoint(
    "POST",
    f"{API}/spaces/{{space_id}}/tokens",
    "Issue a fresh bootstrap token for a Space you own.",
    "session",
    m.NewTokenRequest,
    m.SpaceToken,
    "spaces",
)
SHARE: Endpoint[m.ShareUpdate, m.Space] = Endpoint(
    "PATCH",
    f"{API}/spaces/{{space_id}}/shares",
    "Share a Space with people, or stop sharing it.",
    "session",
    m.ShareUpdate,
    m.Space,
    "spaces",
)

SPACE_KEYS: Endpoint[None, list[m.SpaceKey]] = Endpoint(
    "GET",
    f"{API}/space-keys",
    "Your reusable Space keys (their use, never their secret).",
    "session",
    response=list[m.SpaceKey],
    tag="space-keys",
)
CREATE_SPACE_KEY: Endpoint[m.NewSpaceKeyRequest, m.NewSpaceKey] = Endpoint(
    "POST",
    f"{API}/space-keys",
    "Create a reusable Space key: any container that bootstraps with it becomes its own Space of yours.",
    "session",
    m.NewSpaceKeyRequest,
    m.NewSpaceKey,
    "space-keys",
)
REVOKE_SPACE_KEY: Endpoint[m.RevokeSpaceKeyRequest, m.RevokedSpaceKey] = Endpoint(
    "POST",
    f"{API}/space-keys/{{key_id}}/revoke",
    "Revoke a Space key: no new container registers with it (optionally delete the Spaces it made).",
    "session",
    m.RevokeSpaceKeyRequest,
    m.RevokedSpaceKey,
    "space-keys",
    params=(("key_id", m.SpaceKeyId),),
)

BOOTSTRAP: Endpoint[m.BootstrapRequest, m.AgentRegistration] = Endpoint(
    "POST",
    f"{API}/agent/bootstrap",
    "Exchange a Space token for an agent credential (once per container).",
    "none",
    m.BootstrapRequest,
    m.AgentRegistration,
    "agent",
)
KEY_BOOTSTRAP: Endpoint[m.KeyBootstrapRequest, m.AgentRegistration] = Endpoint(
    "POST",
    f"{API}/agent/bootstrap-key",
    "Register a container as its own Space with a reusable Space key (the same container again: the same Space).",
    "none",
    m.KeyBootstrapRequest,
    m.AgentRegistration,
    "agent",
)
CHECK_REGISTRATION: Endpoint[m.RegistrationCheck, m.RegistrationCheckResult] = Endpoint(
    "POST",
    f"{API}/agent/registration-check",
    "Whether a Space token or key would register a container now, without using it (install.sh asks first).",
    "none",
    m.RegistrationCheck,
    m.RegistrationCheckResult,
    "agent",
)
CHECKIN: Endpoint[m.AgentCheckin, m.AgentRegistration] = Endpoint(
    "POST",
    f"{API}/agent/checkin",
    "Confirm a stored agent credential and refresh the container's facts.",
    "agent",
    m.AgentCheckin,
    m.AgentRegistration,
    "agent",
)

HEARTBEAT: Endpoint[m.Heartbeat, m.HeartbeatReply] = Endpoint(
    "POST",
    f"{API}/agent/heartbeat",
    "Report the container alive (or stopping); receive the authorized keys when they changed.",
    "agent",
    m.Heartbeat,
    m.HeartbeatReply,
    "agent",
)

# A *session* is a person's login; a *stream* is one connection through the relay (SSH, a
# terminal, a port). These two paths and `pair spaces sessions` keep the names they were published with.
STREAMS: Endpoint[None, list[m.StreamInfo]] = Endpoint(
    "GET",
    f"{API}/spaces/{{space_id}}/sessions",
    "The open streams in a Space, every kind: SSH, terminals, ports (owner).",
    "session",
    response=list[m.StreamInfo],
    tag="spaces",
)
KICK: Endpoint[None, None] = Endpoint(
    "DELETE",
    f"{API}/spaces/{{space_id}}/sessions/{{email}}",
    "End a person's open streams in a Space, every kind (owner).",
    "session",
    tag="spaces",
)
TERMINALS: Endpoint[None, list[tp.TerminalInfo]] = Endpoint(
    "GET",
    f"{API}/spaces/{{space_id}}/terminals",
    "Open terminals in a Space: who started each, who is attached and how (owner and shares).",
    "session",
    response=list[tp.TerminalInfo],
    tag="spaces",
)
UP: Endpoint[None, m.Space] = Endpoint(
    "POST",
    f"{API}/spaces/{{space_id}}/up",
    "Start SSH service in the Space.",
    "session",
    response=m.Space,
    tag="spaces",
)
DOWN: Endpoint[None, m.Space] = Endpoint(
    "POST",
    f"{API}/spaces/{{space_id}}/down",
    "Stop SSH service in the Space; its open streams end.",
    "session",
    response=m.Space,
    tag="spaces",
)

SPACE_PORTS: Endpoint[None, m.SpacePorts] = Endpoint(
    "GET",
    f"{API}/spaces/{{space_id}}/shared-ports",
    "A Space's shared ports with their URLs and levels, and (owner) the ports listening in its container.",
    "session",
    response=m.SpacePorts,
    tag="ports",
)
SHARE_PORT: Endpoint[m.PortShare, m.SharedPort] = Endpoint(
    "PUT",
    f"{API}/spaces/{{space_id}}/shared-ports/{{port}}",
    "Share a port of a Space you own at its own URL, or change its level or label.",
    "session",
    m.PortShare,
    m.SharedPort,
    "ports",
)
UNSHARE_PORT: Endpoint[None, None] = Endpoint(
    "DELETE",
    f"{API}/spaces/{{space_id}}/shared-ports/{{port}}",
    "Stop sharing a port; its open connections end.",
    "session",
    tag="ports",
)
QUOTA: Endpoint[None, m.Quota] = Endpoint(
    "GET",
    f"{API}/quota",
    "Your limits (Spaces, compute and storage units), where each comes from, and your usage.",
    "session",
    response=m.Quota,
    tag="quotas",
)
TEMPLATES: Endpoint[None, list[m.Template]] = Endpoint(
    "GET",
    f"{API}/templates",
    "The Space templates, to pick one from.",
    "session",
    response=list[m.Template],
    tag="quotas",
)

ADMIN_TEMPLATES: Endpoint[m.Template, m.Template] = Endpoint(
    "POST", f"{API}/admin/templates", "Add a Space template (admin).", "admin", m.Template, m.Template, "admin"
)
ADMIN_REMOVE_TEMPLATE: Endpoint[None, None] = Endpoint(
    "DELETE",
    f"{API}/admin/templates/{{name}}",
    "Remove a Space template (admin).",
    "admin",
    tag="admin",
    params=TEMPLATE_PARAMS,
)
ADMIN_DEFAULT_TEMPLATE: Endpoint[None, None] = Endpoint(
    "POST",
    f"{API}/admin/templates/{{name}}/default",
    "Make a template the default (admin).",
    "admin",
    tag="admin",
    params=TEMPLATE_PARAMS,
)
ADMIN_GROUPS: Endpoint[None, list[m.Group]] = Endpoint(
    "GET", f"{API}/admin/groups", "All groups (admin).", "admin", response=list[m.Group], tag="admin"
)
ADMIN_ADD_GROUP: Endpoint[m.NewGroupRequest, m.Group] = Endpoint(
    "POST", f"{API}/admin/groups", "Create a group (admin).", "admin", m.NewGroupRequest, m.Group, "admin"
)
ADMIN_REMOVE_GROUP: Endpoint[None, None] = Endpoint(
    "DELETE",
    f"{API}/admin/groups/{{name}}",
    "Remove a group: its members lose what it gave them at once (admin).",
    "admin",
    tag="admin",
    params=GROUP_PARAMS,
)
ADMIN_GROUP_MEMBERS: Endpoint[m.GroupMembersUpdate, m.Group] = Endpoint(
    "PATCH",
    f"{API}/admin/groups/{{name}}/members",
    "Add people to a group or take them out; those who lose a Space lose their streams there at once (admin).",
    "admin",
    m.GroupMembersUpdate,
    m.Group,
    "admin",
    params=GROUP_PARAMS,
)
ADMIN_USER_QUOTA: Endpoint[m.Limits, m.Quota] = Endpoint(
    "PUT",
    f"{API}/admin/users/{{email}}/quota",
    "Set a user's own limits; null unsets one (admin).",
    "admin",
    m.Limits,
    m.Quota,
    "admin",
)
ADMIN_GROUP_QUOTA: Endpoint[m.Limits, m.Group] = Endpoint(
    "PUT",
    f"{API}/admin/groups/{{name}}/quota",
    "Set a group's limits; null unsets one (admin).",
    "admin",
    m.Limits,
    m.Group,
    "admin",
    params=GROUP_PARAMS,
)

ACCESS_REQUEST: Endpoint[m.NewAccessRequest, m.DeviceAuthorization] = Endpoint(
    "POST",
    f"{API}/access-requests",
    "Ask for an account (no session): returns a device code to poll with (RFC 8628).",
    "none",
    m.NewAccessRequest,
    m.DeviceAuthorization,
    "accounts",
)
ACCESS_REQUEST_TOKEN: Endpoint[m.DeviceTokenRequest, m.DeviceToken] = Endpoint(
    "POST",
    f"{API}/access-requests/token",
    "Poll with a device code: pending, slow_down, or approved with a session.",
    "none",
    m.DeviceTokenRequest,
    m.DeviceToken,
    "accounts",
)
ADMIN_ACCESS_REQUESTS: Endpoint[None, list[m.AccessRequest]] = Endpoint(
    "GET",
    f"{API}/admin/access-requests",
    "Access requests, pending first (admin).",
    "admin",
    response=list[m.AccessRequest],
    tag="admin",
)
ADMIN_APPROVE_REQUEST: Endpoint[None, m.AccessRequest] = Endpoint(
    "POST",
    f"{API}/admin/access-requests/{{request_id}}/approve",
    "Approve: the account and a Space are made, and the waiting CLI is signed in (admin).",
    "admin",
    response=m.AccessRequest,
    tag="admin",
)
ADMIN_DENY_REQUEST: Endpoint[None, m.AccessRequest] = Endpoint(
    "POST",
    f"{API}/admin/access-requests/{{request_id}}/deny",
    "Deny: the waiting CLI is told (admin).",
    "admin",
    response=m.AccessRequest,
    tag="admin",
)

# WebSocket endpoints (not JSON; described in docs/architecture.md, "Streams").
AGENT_CONNECT = f"{API}/agent/connect"  # the agent's control channel (agent credential)
AGENT_STREAM = f"{API}/agent/streams/{{stream_id}}"  # the agent's side of one stream (agent credential)
AGENT_TUNNEL = f"{API}/agent/tunnels/{{tunnel_id}}"  # the same, as agents that predate streams dial it
# A person's SSH stream (session). "tunnel" here and in AGENT_TUNNEL is the published path: older
# CLIs' `pair spaces proxy` and older agents dial it, so it keeps the name; everything else says stream.
SPACE_TUNNEL = f"{API}/spaces/{{space_id}}/tunnel"
# In the answer that accepts a person's SSH stream: the Space's host keys as the broker recorded them
# (`TYPE BASE64`, comma-separated), so the proxy can re-pin them before ssh checks the server's key.
HOST_KEYS_HEADER = "x-pair-host-keys"
# A person's terminal stream (session): `?cols=C&rows=R` opens a new terminal, `?join=TERMINAL_ID`
# (with `&read_only=true`, and the window's `cols`/`rows`) joins one, `&control=true` only to send
# it control messages (no output, no join audited); pair.api.terminal's protocol.
SPACE_TERMINAL = f"{API}/spaces/{{space_id}}/terminal"
SPACE_PORT = f"{API}/spaces/{{space_id}}/ports/{{port}}"  # a person's TCP stream to 127.0.0.1:PORT (session)
# The terminal page (a signed-in browser) and its stream: the web session cookie, the broker's own
# `Origin` only; the same query and protocol as SPACE_TERMINAL.
WEB_TERMINAL_PAGE = "/spaces/{space_id}/terminal"
WEB_TERMINAL = "/web/spaces/{space_id}/terminal/ws"


# Who may open a WebSocket endpoint: a person's bearer session, a container's agent credential,
# or the web page's cookie session from the broker's own origin.
WebSocketAuth = Literal["session", "agent", "web"]


@dataclass(frozen=True)
class WebSocketEndpoint:
    """One WebSocket endpoint (RFC 6455): a GET that upgrades, then frames rather than JSON
    bodies (docs/architecture.md, "Streams"). A refused upgrade answers with the error body."""

    path: str
    summary: str
    auth: WebSocketAuth
    tag: str = ""


WEBSOCKETS: tuple[WebSocketEndpoint, ...] = (
    WebSocketEndpoint(
        AGENT_CONNECT,
        "The agent's control channel: heartbeats in; replies, pushes and stream requests out.",
        "agent",
        "agent",
    ),
    WebSocketEndpoint(AGENT_STREAM, "The agent's end of one stream the broker asked it to open.", "agent", "agent"),
    WebSocketEndpoint(
        AGENT_TUNNEL, "The agent's end of one SSH stream, as agents that predate streams dial it.", "agent", "agent"
    ),
    WebSocketEndpoint(SPACE_TUNNEL, "A person's SSH stream into a Space (binary frames).", "session", "spaces"),
    WebSocketEndpoint(
        SPACE_TERMINAL,
        "A person's terminal in a Space: `?cols=C&rows=R` opens one, `?join=TERMINAL_ID` joins one"
        " (pair.api.terminal).",
        "session",
        "spaces",
    ),
    WebSocketEndpoint(
        SPACE_PORT, "A person's TCP stream to 127.0.0.1:PORT in a Space (binary frames).", "session", "spaces"
    ),
    WebSocketEndpoint(
        WEB_TERMINAL, "The web page's terminal in a Space: the same query and protocol as the terminal stream.", "web"
    ),
)


def websocket_url(base_url: str, path: str) -> str:
    """The ws:// or wss:// URL of a WebSocket endpoint `path` on the broker at `base_url`
    (http → ws, https → wss, RFC 6455 §3)."""
    scheme, rest = base_url.split("://", 1)
    return ("wss://" if scheme == "https" else "ws://") + rest.rstrip("/") + path


ALL: tuple[Endpoint[Any, Any], ...] = tuple(v for v in list(globals().values()) if isinstance(v, Endpoint))
