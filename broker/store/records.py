"""Rows as the store hands them to the rest of the broker (times are Unix seconds)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

from pair.api.models import AccessRequestState, PortLevel, Role, SpaceState, StreamKind

DesiredState = Literal["running", "stopped"]  # what the owner asked for with up/down


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: str
    email: str
    is_admin: bool
    created_at: int


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: str
    user_id: str
    kind: str
    client: str
    created_at: int
    expires_at: int
    last_used_at: int


@dataclass(frozen=True, slots=True)
class SshKeyRecord:
    id: str
    user_id: str
    fingerprint: str
    key_type: str
    bits: int
    public_key: str
    comment: str
    created_at: int


@dataclass(frozen=True, slots=True)
class SpaceRecord:
    id: str
    owner_id: str
    owner_email: str
    name: str
    state: SpaceState
    created_at: int
    updated_at: int
    last_seen_at: int | None
    deleted_at: int | None
    instance_id: str | None
    facts: str | None  # ContainerFacts as JSON, as the agent reported them
    desired_state: DesiredState = "running"
    ssh: str | None = None  # SshHealth as JSON, as the agent last reported it
    space_key_id: str | None = None  # the Space key that made it (a container registered itself)
    container_name: str | None = None  # with that key, the container it was made for (grammar.container_identity)
    template: str | None = None  # the template's name when the Space was made (None: made without one)
    compute_units: int = 0  # what it costs while starting or running (its template's, when made)
    storage_units: int = 0  # what it costs while it exists


class AuthorizedKeyRow(NamedTuple):
    """One key that may log in to a Space, and whose it is."""

    email: str
    role: Role
    public_key: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class TokenRecord:
    jti: str
    space_id: str
    issued_by: str
    issued_at: int
    expires_at: int
    used_instance_id: str | None
    used_at: int | None
    revoked_at: int | None


@dataclass(frozen=True, slots=True)
class SpaceKeyRecord:
    """A reusable Space key (its secret only as `key_hash`, SHA-256 hex)."""

    id: str
    owner_id: str
    name: str
    key_hash: str
    created_at: int
    expires_at: int | None  # None: never
    revoked_at: int | None = None
    uses: int = 0
    last_used_at: int | None = None
    template: str | None = None  # the template its Spaces are made from; None: the default then


@dataclass(frozen=True, slots=True)
class StreamRecord:
    id: str
    space_id: str
    user_id: str
    email: str
    client_address: str
    opened_at: int
    closed_at: int | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    close_reason: str = ""
    kind: StreamKind = "ssh"  # what the stream reached: ssh, terminal, port
    replica_id: str = ""  # the broker replica that logged it (empty: a single broker)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    at: int
    actor: str  # an email, `agent:SPACE_ID`, or what ran an admin command (`admin`, `first-start`)
    action: str  # `space.create`, `session.revoke`, …
    target: str
    detail: str


@dataclass(frozen=True, slots=True)
class PortRecord:
    """A port a Space shares at its own origin; `address` is its first DNS label,
    `PORT--SPACE--OWNER` (broker.apps.hosts)."""

    space_id: str
    port: int
    level: PortLevel
    label: str
    address: str
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class SealedKeyRecord:
    """A token signing key as the database keeps it: its private key sealed (broker.sealing)."""

    kid: str
    created_at: int
    sealed: str


@dataclass(frozen=True, slots=True)
class TemplateRecord:
    name: str
    description: str
    compute_units: int
    storage_units: int
    is_default: bool
    created_at: int


@dataclass(frozen=True, slots=True)
class Limits:
    """A quota's three limits; None is unset."""

    spaces: int | None = None
    compute: int | None = None
    storage: int | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """What a person's Spaces use: live Spaces they own, their storage units, and the compute
    units of those starting or running."""

    spaces: int = 0
    compute: int = 0
    storage: int = 0


@dataclass(frozen=True, slots=True)
class GroupRecord:
    id: str
    name: str
    created_at: int
    quota: Limits
    members: tuple[str, ...] = ()  # emails, sorted


@dataclass(frozen=True, slots=True)
class AccessRequestRecord:
    id: str
    email: str
    message: str
    client_address: str
    state: AccessRequestState
    created_at: int
    expires_at: int
    decided_at: int | None = None
    decided_by: str = ""
    user_id: str | None = None
    space_id: str | None = None
    last_polled_at: int | None = None


@dataclass(frozen=True, slots=True)
class ReplicaRecord:
    """A broker replica sharing the database: its id, the address the other replicas reach it
    at (an http(s) URL), when it started and when it last beat (Unix seconds)."""

    id: str
    address: str
    started_at: int
    seen_at: int


@dataclass(frozen=True, slots=True)
class AgentChannelRecord:
    """Where a Space's agent control channel is held (since `attached_at`), and what the agent
    last reported there (JSON: its terminals, `list[TerminalInfo]`, and listening ports,
    `list[int]`; None before its first heartbeat)."""

    space_id: str
    replica: ReplicaRecord
    terminals: str | None = None
    listening: str | None = None
    attached_at: int = 0
