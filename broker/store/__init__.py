"""All SQL lives behind `Store`. Routes and services never see a cursor.

The interface is async so that a PostgreSQL store (for several broker replicas) can await its
driver; the SQLite store answers inline, because an indexed lookup takes ~10 µs and a thread
hop costs more than the query (../shared/FACTS.md).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Protocol

from broker.store.records import (
    AuditRecord,
    PortRecord,
    SessionRecord,
    SpaceRecord,
    SshKeyRecord,
    TokenRecord,
    TunnelRecord,
    UserRecord,
)

__all__ = [
    "AuditRecord",
    "Conflict",
    "PortRecord",
    "SessionRecord",
    "SpaceRecord",
    "SshKeyRecord",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "TokenRecord",
    "TunnelRecord",
    "UserRecord",
]


class StoreError(Exception):
    pass


class StoreUnavailable(StoreError):
    """The database cannot be used right now (disk full, read-only, I/O error, locked): the
    environment's fault, not the request's. `why` says what, `hint` what the operator can do."""

    def __init__(self, path: Path, why: str, hint: str) -> None:
        super().__init__(f"Cannot use the database {path}: {why}.")
        self.path, self.why, self.hint = path, why, hint


class Conflict(StoreError):
    """A uniqueness rule was hit (email, key fingerprint, Space name per owner)."""


class Store(Protocol):
    async def close(self) -> None: ...

    async def check_writable(self) -> None:
        """Commit a write that changes nothing; StoreUnavailable if the database cannot take it."""
        ...

    @property
    def unavailable(self) -> StoreUnavailable | None:
        """The last storage failure, while no write has succeeded since."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[None]:
        """Group the calls made inside into one transaction (commit at the end, rollback on error).
        Await nothing but the store inside it."""
        ...

    # users and auth keys
    async def create_user(self, user: UserRecord, auth_key_hash: str) -> None: ...
    async def user_by_email(self, email: str) -> UserRecord | None: ...
    async def user_by_auth_key(self, auth_key_hash: str) -> UserRecord | None: ...
    async def users(self) -> list[UserRecord]: ...
    async def set_auth_key(self, user_id: str, auth_key_hash: str, now: int) -> None: ...
    async def remove_user(self, user_id: str, now: int) -> list[str]: ...

    # sessions
    async def create_session(self, session: SessionRecord, token_hash: str) -> None: ...
    async def session_by_token(self, token_hash: str, now: int) -> tuple[SessionRecord, UserRecord] | None: ...
    async def touch_session(self, session_id: str, now: int) -> None: ...
    async def revoke_session(self, session_id: str, now: int) -> None: ...
    async def session_live(self, session_id: str, user_id: str, now: int) -> bool: ...

    # one-time sign-in links for the web page
    async def add_web_link(self, token_hash: str, user_id: str, now: int, expires_at: int) -> None: ...
    async def redeem_web_link(self, token_hash: str, now: int) -> UserRecord | None: ...

    # SSH keys
    async def add_ssh_key(self, key: SshKeyRecord) -> None: ...
    async def ssh_keys(self, user_id: str) -> list[SshKeyRecord]: ...
    async def remove_ssh_key(self, user_id: str, key_id: str) -> bool: ...

    # Spaces and shares
    async def create_space(self, space: SpaceRecord, share_user_ids: list[str]) -> None: ...
    async def space(self, space_id: str) -> SpaceRecord | None: ...
    async def visible_spaces(self, user_id: str) -> list[SpaceRecord]: ...
    async def is_shared_with(self, space_id: str, user_id: str) -> bool: ...
    async def space_name_taken(self, owner_id: str, name: str) -> bool: ...
    async def shares(self, space_id: str) -> list[str]: ...
    async def shares_of(self, space_ids: list[str]) -> dict[str, list[str]]: ...
    async def update_shares(self, space_id: str, add: list[str], remove: list[str], now: int) -> None: ...
    async def delete_space(self, space_id: str, now: int) -> None: ...

    # Space tokens and the agent
    async def add_token(self, token: TokenRecord) -> None: ...
    async def token(self, jti: str) -> TokenRecord | None: ...
    async def register_agent(
        self, jti: str, space_id: str, instance_id: str, facts: str, credential_hash: str, now: int
    ) -> bool:
        """Claim the token `jti` for the container `instance_id` and make it the Space's, with
        the new credential. The claim holds only if the token is unrevoked, its Space not
        deleted, and the token unused or already this instance's; it is decided by the
        database (a conditional update), so two broker processes cannot both win. False, with
        nothing changed, if the claim lost."""
        ...

    async def space_by_credential(self, credential_hash: str) -> SpaceRecord | None: ...
    async def update_facts(self, space_id: str, facts: str, now: int) -> None: ...
    async def authorized_keys(self, space_id: str) -> list[tuple[str, str, str, str]]: ...
    async def heartbeat(self, space_id: str, state: str, now: int, facts: str | None, ssh: str | None = None) -> None:
        """Record what an agent reported; `facts` and `ssh` (JSON) are kept when None."""
        ...

    async def stop_silent_spaces(self, seen_before: int, now: int) -> list[str]:
        """Mark live Spaces (starting, running or stopping) last seen before `seen_before` stopped."""
        ...

    async def record_seen(self, seen: dict[str, int]) -> None: ...
    async def set_desired_state(self, space_id: str, desired: str, state: str, now: int) -> None: ...

    # the connection log: every stream (SSH, terminal, port), open and closed
    async def open_tunnel(self, tunnel: TunnelRecord) -> None: ...
    async def close_tunnel(self, tunnel_id: str, now: int, bytes_in: int, bytes_out: int, reason: str) -> None: ...
    async def open_tunnels(self, space_id: str) -> list[TunnelRecord]: ...
    async def close_dangling_tunnels(self, now: int) -> None: ...

    # shared ports (issue 12)
    async def user(self, user_id: str) -> UserRecord | None: ...
    async def user_handle(self, user_id: str) -> str | None: ...
    async def set_user_handle(self, user_id: str, handle: str) -> bool:
        """Give the user `handle` unless they have one; False if another user has it."""
        ...

    async def shared_ports(self, space_id: str) -> list[PortRecord]:
        """The Space's shared ports, by port."""
        ...

    async def shared_port(self, address: str) -> PortRecord | None:
        """The shared port at `address` (`PORT--SPACE--OWNER`) of a live Space."""
        ...

    async def share_port(self, port: PortRecord) -> None:
        """Add the share, or update its level and label (its address stays). Conflict when
        another Space's port has the address."""
        ...

    async def unshare_port(self, space_id: str, port: int) -> PortRecord | None:
        """Remove the share; the removed record, or None if there was none."""
        ...

    async def claim_ticket(self, nonce: str, expires_at: int, now: int) -> bool:
        """True the first time `nonce` is claimed (until `expires_at`), False after."""
        ...

    # audit
    async def audit(self, now: int, actor: str, action: str, target: str, detail: str = "") -> None: ...

    async def audit_log(
        self, *, limit: int, since: int | None = None, actor: str = "", action: str = "", target: str = ""
    ) -> list[AuditRecord]:
        """The newest `limit` entries that match, oldest first. `action` matches itself and its
        sub-actions (`space` matches `space.create`)."""
        ...
