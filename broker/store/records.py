"""Rows as the store hands them to the rest of the broker (times are Unix seconds)."""

from __future__ import annotations

from dataclasses import dataclass


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
    state: str
    created_at: int
    updated_at: int
    last_seen_at: int | None
    deleted_at: int | None
    instance_id: str | None
    facts: str | None  # ContainerFacts as JSON, as the agent reported them


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
