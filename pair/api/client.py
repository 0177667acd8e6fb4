"""The broker's HTTP client: the only code in `pair` that knows URLs and JSON.

Tests hand it an `httpx.Client` whose transport is the in-process broker (Starlette's
TestClient), so the same client code runs against a real server and an in-memory one.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, overload
from urllib.parse import quote, urlencode

# httpx imports its own command line (click, rich, pygments: ~45 ms) unless that module is
# absent; pair never uses it.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import httpx
import msgspec

from pair import __version__, tls
from pair.api import endpoints as ep
from pair.api import fields
from pair.api import models as m
from pair.api import terminal as tp
from pair.api.errors import ApiError, BrokerUnreachable, PairError, answered
from pair.api.fields import space_from_json, space_problem
from pair.api.grammar import Invalid, shown

Req = TypeVar("Req")
Resp = TypeVar("Resp")

# Where clients get their HTTP connection when none is passed. Tests point it at the in-process
# broker (Starlette's TestClient is an httpx.Client), so every command and the container code
# run unchanged against it.
http_factory: Callable[[str], httpx.Client] | None = None


class Client:
    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        http: httpx.Client | None = None,
        timeout: float = 30.0,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self.warn = warn or _warn
        if http is None and http_factory is not None:
            http = http_factory(self.url)
        # TLS trust is pair.tls's (SSL_CERT_FILE, SSL_CERT_DIR, the system store); a plain-http
        # broker (a laptop, a test) loads no CA bundle, which costs ~20 ms.
        self._http = http or httpx.Client(
            timeout=timeout, headers={"User-Agent": f"pair/{__version__}"}, verify=tls.verifying(self.url)
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------

    @overload
    def call(
        self, endpoint: ep.Endpoint[None, Any], *, path: Mapping[str, str] | None = None, decode_as: type[Resp]
    ) -> Resp: ...
    @overload
    def call(self, endpoint: ep.Endpoint[None, Resp], *, path: Mapping[str, str] | None = None) -> Resp: ...
    @overload
    def call(self, endpoint: ep.Endpoint[Req, Resp], body: Req, *, path: Mapping[str, str] | None = None) -> Resp: ...
    def call(
        self,
        endpoint: ep.Endpoint[Any, Any],
        body: Any = None,
        *,
        path: Mapping[str, str] | None = None,
        decode_as: Any = None,
    ) -> Any:
        """Send `body` to `endpoint` (its path parameters from `path`) and decode the answer as
        the endpoint's response type (or `decode_as`, e.g. a list of msgspec.Raw to decode each
        item on its own); None for 204. Raises BrokerUnreachable, AuthError (401) or ApiError
        (any other error, with the broker's message, detail and code). Raises PairError first,
        sending nothing, for a path parameter or a body field that breaks its type's grammar
        (pair.api.fields: the sentence the broker would answer with)."""
        if path:
            try:
                fields.check_path(endpoint.path_types(), dict(path))
            except Invalid as exc:
                raise PairError(exc.message, exc.hint) from exc
        if body is not None and endpoint.request is not None:
            breaks = fields.grammar_refusal(endpoint.request, body)
            if breaks is not None:
                raise PairError(breaks.message, breaks.hint)
        url = self.url + endpoint.path.format(**{k: quote(v, safe="") for k, v in (path or {}).items()})
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        content = msgspec.json.encode(body) if body is not None else None
        try:
            response = self._http.request(endpoint.method, url, content=content, headers=headers)
        except httpx.TransportError as exc:
            refused = tls.refusal(exc, self.url)
            if refused is not None:  # not "unreachable": it answered, and retrying will not help
                raise refused from exc
            raise BrokerUnreachable(
                f"Cannot reach the broker at {self.url} ({_reason(exc)}).",
                "Check the URL (`pair whoami`, PAIR_URL) and that the broker is running.",
            ) from exc
        if response.status_code >= 400:
            raise answered(response.status_code, response.content, self.url)
        if endpoint.response is None:
            return None
        try:
            return msgspec.json.decode(response.content, type=decode_as or endpoint.response)
        except msgspec.DecodeError as exc:
            raise ApiError(
                response.status_code,
                f"The broker at {self.url} sent a response this version of pair does not understand.",
                f"{exc}. Is the URL a pair broker, and are pair and the broker versions compatible?",
            ) from exc

    # -- accounts ---------------------------------------------------------------------------

    def login(self, email: str, auth_key: str, client: str = "") -> m.LoginResponse:
        return self.call(ep.LOGIN, m.LoginRequest(email=email, auth_key=auth_key, client=client))

    def logout(self) -> None:
        self.call(ep.LOGOUT)

    def me(self) -> m.User:
        return self.call(ep.ME)

    def teammates(self) -> list[m.Teammate]:
        return self.call(ep.TEAMMATES)

    def web_link(self) -> m.WebLink:
        return self.call(ep.WEB_LINK)

    def admin_users(self) -> list[m.User]:
        return self.call(ep.ADMIN_USERS)

    def admin_add_user(self, email: str, *, is_admin: bool = False) -> m.UserWithKey:
        return self.call(ep.ADMIN_ADD_USER, m.NewUserRequest(email=email, is_admin=is_admin))

    def admin_remove_user(self, email: str) -> None:
        self.call(ep.ADMIN_REMOVE_USER, path={"email": email})

    def admin_reset_key(self, email: str) -> m.UserWithKey:
        return self.call(ep.ADMIN_RESET_KEY, path={"email": email})

    # -- SSH keys ---------------------------------------------------------------------------

    def ssh_keys(self) -> list[m.SshKey]:
        return self.call(ep.KEYS)

    def add_key(self, public_key: str) -> m.SshKey:
        return self.call(ep.ADD_KEY, m.NewSshKeyRequest(public_key=public_key))

    def remove_key(self, key_id: str) -> None:
        self.call(ep.REMOVE_KEY, path={"key_id": key_id})

    # -- Spaces -----------------------------------------------------------------------------

    # Every Space the broker sends is checked against pair.api.grammar before the CLI can print
    # it, write it into an ssh config or known_hosts, or build an ssh argument from it.

    def spaces(self) -> list[m.Space]:
        """The Spaces you can see. Each is decoded and checked on its own (fields.space_from_json):
        one that does not fit (a hostile or broken broker, someone in between, a newer broker's
        field) is left out with a warning; it never breaks the others."""
        out = []
        for item in self.call(ep.SPACES, decode_as=list[msgspec.Raw]):
            try:
                out.append(space_from_json(bytes(item)))
            except Invalid as exc:
                self.warn(exc.message)
        return out

    def _checked(self, space: m.Space) -> m.Space:
        problem = space_problem(space)
        if problem:
            raise PairError(
                f"The broker at {self.url} sent a Space pair cannot use ({shown(space.id)}): {problem}.",
                "Is the URL your pair broker? Tell its operator.",
            )
        return space

    def space(self, space_id: str) -> m.Space:
        return self._checked(self.call(ep.SPACE, path={"space_id": space_id}))

    def authorize(
        self, *, name: str | None, share_with: list[str], ttl_seconds: int | None, template: str | None = None
    ) -> m.SpaceToken:
        body = m.AuthorizeRequest(name=name, share_with=share_with, ttl_seconds=ttl_seconds, template=template)
        issued = self.call(ep.AUTHORIZE, body)
        self._checked(issued.space)
        return issued

    def new_token(self, space_id: str, *, ttl_seconds: int | None) -> m.SpaceToken:
        body = m.NewTokenRequest(ttl_seconds=ttl_seconds)
        issued = self.call(ep.NEW_TOKEN, body, path={"space_id": space_id})
        self._checked(issued.space)
        return issued

    def delete_space(self, space_id: str) -> None:
        self.call(ep.DELETE_SPACE, path={"space_id": space_id})

    def share(
        self,
        space_id: str,
        *,
        add: Sequence[str] = (),
        remove: Sequence[str] = (),
        add_groups: Sequence[str] = (),
        remove_groups: Sequence[str] = (),
    ) -> m.Space:
        body = m.ShareUpdate(
            add=list(add), remove=list(remove), add_groups=list(add_groups), remove_groups=list(remove_groups)
        )
        return self._checked(self.call(ep.SHARE, body, path={"space_id": space_id}))

    def streams(self, space_id: str) -> list[m.StreamInfo]:
        return self.call(ep.STREAMS, path={"space_id": space_id})

    def kick(self, space_id: str, email: str) -> None:
        self.call(ep.KICK, path={"space_id": space_id, "email": email})

    def terminals(self, space_id: str) -> list[tp.TerminalInfo]:
        return self.call(ep.TERMINALS, path={"space_id": space_id})

    def terminal_url(self, space_id: str, **query: str | int | bool) -> str:
        """The ws:// or wss:// URL of a terminal stream (pair.api.terminal's protocol): `cols`,
        `rows` open one; `join=TERMINAL_ID` (and `read_only`) joins one. Booleans as `true`/`false`."""
        params = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in query.items()}
        path = ep.SPACE_TERMINAL.format(space_id=quote(space_id, safe=""))
        return ep.websocket_url(self.url, path) + ("?" + urlencode(params) if params else "")

    def bearer(self) -> dict[str, str]:
        """The session's Authorization header, for a WebSocket this client's URL names."""
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def request_access(self, email: str, message: str = "") -> m.DeviceAuthorization:
        return self.call(ep.ACCESS_REQUEST, m.NewAccessRequest(email=email, message=message))

    def poll_access(self, device_code: str) -> m.DeviceToken:
        return self.call(ep.ACCESS_REQUEST_TOKEN, m.DeviceTokenRequest(device_code=device_code))

    def access_requests(self) -> list[m.AccessRequest]:
        return self.call(ep.ADMIN_ACCESS_REQUESTS)

    def decide_access(self, request_id: str, *, approve: bool) -> m.AccessRequest:
        endpoint = ep.ADMIN_APPROVE_REQUEST if approve else ep.ADMIN_DENY_REQUEST
        return self.call(endpoint, path={"request_id": request_id})

    # -- admin: groups, templates, quotas ---------------------------------------------------

    def add_group(self, name: str) -> m.Group:
        return self.call(ep.ADMIN_ADD_GROUP, m.NewGroupRequest(name=name))

    def groups(self) -> list[m.Group]:
        return self.call(ep.ADMIN_GROUPS)

    def group_members(self, name: str, *, add: Sequence[str] = (), remove: Sequence[str] = ()) -> m.Group:
        body = m.GroupMembersUpdate(add=list(add), remove=list(remove))
        return self.call(ep.ADMIN_GROUP_MEMBERS, body, path={"name": name})

    def set_user_quota(self, email: str, limits: m.Limits) -> m.Quota:
        return self.call(ep.ADMIN_USER_QUOTA, limits, path={"email": email})

    def set_group_quota(self, name: str, limits: m.Limits) -> m.Group:
        return self.call(ep.ADMIN_GROUP_QUOTA, limits, path={"name": name})

    def quota(self) -> m.Quota:
        return self.call(ep.QUOTA)

    def templates(self) -> list[m.Template]:
        return self.call(ep.TEMPLATES)

    def up(self, space_id: str) -> m.Space:
        return self._checked(self.call(ep.UP, path={"space_id": space_id}))

    def down(self, space_id: str) -> m.Space:
        return self._checked(self.call(ep.DOWN, path={"space_id": space_id}))

    def ports(self, space_id: str) -> m.SpacePorts:
        return self.call(ep.SPACE_PORTS, path={"space_id": space_id})

    def share_port(self, space_id: str, port: int, body: m.PortShare) -> m.SharedPort:
        return self.call(ep.SHARE_PORT, body, path={"space_id": space_id, "port": str(port)})

    def unshare_port(self, space_id: str, port: int) -> None:
        self.call(ep.UNSHARE_PORT, path={"space_id": space_id, "port": str(port)})

    # -- Space keys -------------------------------------------------------------------------

    def space_keys(self) -> list[m.SpaceKey]:
        return self.call(ep.SPACE_KEYS)

    def create_space_key(
        self, name: str, *, share_with: list[str], expires_in_seconds: int | None, template: str | None = None
    ) -> m.NewSpaceKey:
        body = m.NewSpaceKeyRequest(
            name=name, share_with=share_with, expires_in_seconds=expires_in_seconds, template=template
        )
        return self.call(ep.CREATE_SPACE_KEY, body)

    def revoke_space_key(self, key_id: str, *, delete_spaces: bool) -> m.RevokedSpaceKey:
        body = m.RevokeSpaceKeyRequest(delete_spaces=delete_spaces)
        return self.call(ep.REVOKE_SPACE_KEY, body, path={"key_id": key_id})

    # -- container side ---------------------------------------------------------------------

    def bootstrap(self, token: str, instance_id: str, facts: m.ContainerFacts) -> m.AgentRegistration:
        body = m.BootstrapRequest(token=token, instance_id=instance_id, facts=facts)
        return self.call(ep.BOOTSTRAP, body)

    def bootstrap_with_key(
        self,
        space_key: str,
        container_name: str,
        instance_id: str,
        facts: m.ContainerFacts,
        container_digest: str | None = None,
    ) -> m.AgentRegistration:
        body = m.KeyBootstrapRequest(
            space_key=space_key,
            container_name=container_name,
            instance_id=instance_id,
            facts=facts,
            container_digest=container_digest,
        )
        return self.call(ep.KEY_BOOTSTRAP, body)

    def heartbeat(self, beat: m.Heartbeat) -> m.HeartbeatReply:
        return self.call(ep.HEARTBEAT, beat)

    def checkin(self, instance_id: str, facts: m.ContainerFacts) -> m.AgentRegistration:
        return self.call(ep.CHECKIN, m.AgentCheckin(instance_id=instance_id, facts=facts))


def _warn(message: str) -> None:
    sys.stderr.write(f"warning: {message}\n")


def _reason(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "connection refused or host not found"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return type(exc).__name__
