"""The store contract: every query the broker makes, and how they group into transactions.
Routes and services never see SQL; a backend (`broker.store.sqlite`, and PostgreSQL for
several replicas) implements these protocols and keeps its dialect to itself. The contract
suite (tests/unit/test_store_contract.py) runs against every backend.

- **Calls outside a transaction** each commit on their own: one statement, or the few a method
  needs, all or nothing.
- **A transaction** groups calls into one commit: `async with store.transaction() as tx:` then
  `await tx.create_space(…)`. It commits when the block ends and rolls back if the block raises.
  `tx.transaction()` opens a savepoint inside it (as asyncpg and psycopg nest theirs): its
  block's changes are undone alone when it raises, and the outer transaction goes on. Code that
  takes a `broker.context.Context` uses `ctx.transaction()`, which does the same and hands back a
  context whose `store` is the transaction.
- **A failed statement aborts the transaction it ran in**, as PostgreSQL does: a `Conflict`, or
  any other StoreError, leaves the transaction able to do nothing but roll back. Every later call
  in it raises `TransactionAborted`, and so does leaving its block normally (it was rolled back).
  To go on after an expected `Conflict` (a name taken: try another), make each attempt a
  savepoint; to go on after anything else, run the whole transaction again. The SQLite store
  enforces this too, though SQLite itself would carry on, so the tests catch a misuse.
- **One transaction at a time per store connection, and nothing but the store awaited inside
  it**: a transaction holds its connection (SQLite: the one connection and its write lock) until
  its block ends. The SQLite store refuses a call on the store itself while a transaction is open
  (StoreError), since that call would silently join it.
- **Lists come in one order, whatever ties**: times are whole seconds, so rows often share one;
  a list ordered by a time breaks ties by a name or email and then the id, never by where the
  rows happen to lie (ids are random).
- **Open a store in the event loop that uses it**: async drivers bind their pools to one loop.
  `broker.store.backends.open_store` opens one; the app does it in its lifespan, each admin
  command in its own `asyncio.run`. The SQLite store answers inline (an indexed lookup takes
  ~10 µs, less than a thread hop: ../../docs/performance.md) and so binds to no loop.
"""

from __future__ import annotations

from collections.abc import Collection
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Protocol

from broker.store.records import (
    AccessRequestRecord,
    AgentChannelRecord,
    AuditRecord,
    AuthorizedKeyRow,
    DesiredState,
    GroupRecord,
    Limits,
    PortRecord,
    ReplicaRecord,
    SealedKeyRecord,
    SessionRecord,
    SpaceKeyRecord,
    SpaceRecord,
    SshKeyRecord,
    StreamRecord,
    TemplateRecord,
    TokenRecord,
    Usage,
    UserRecord,
)
from pair.api.models import SpaceState

__all__ = [
    "AccessRequestRecord",
    "AgentChannelRecord",
    "AuditRecord",
    "AuthorizedKeyRow",
    "Conflict",
    "DesiredState",
    "GroupRecord",
    "Limits",
    "PortRecord",
    "Queries",
    "ReplicaRecord",
    "SchemaTooNew",
    "SealedKeyRecord",
    "SessionRecord",
    "SpaceKeyRecord",
    "SpaceRecord",
    "SshKeyRecord",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "StreamRecord",
    "TemplateRecord",
    "TokenRecord",
    "Transaction",
    "TransactionAborted",
    "Usage",
    "UserRecord",
]


class StoreError(Exception):
    pass


class SchemaTooNew(StoreError):
    """The database was migrated by a newer release than this one (`version` > `newest`)."""

    def __init__(self, version: int, newest: int) -> None:
        super().__init__(f"The database is at schema version {version}, newer than this broker knows ({newest}).")
        self.version, self.newest = version, newest
        self.hint = (
            "A newer pair-broker migrated it: run that release (every replica), or restore the database from"
            " a backup taken before the upgrade to run this one."
        )


class StoreUnavailable(StoreError):
    """The database cannot be used right now (disk full, read-only, I/O error, locked, its server
    unreachable): the environment's fault, not the request's. `path` is the SQLite file, or the
    PostgreSQL URL without its password; `why` says what, `hint` what the operator can do."""

    def __init__(self, path: Path | str, why: str, hint: str) -> None:
        super().__init__(f"Cannot use the database {path}: {why}.")
        self.path, self.why, self.hint = path, why, hint


class Conflict(StoreError):
    """A uniqueness rule was hit: `rule` names it (`users.email`, `ssh_keys.fingerprint`,
    `spaces.name`: a live Space's name per owner, `space_keys.name`: a Space key's name per owner
    among keys not revoked, `spaces.container`: a live Space per Space key and container name,
    `templates.name`, `groups.name`). Inside a transaction it aborts it (see above)."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


class TransactionAborted(StoreError):
    """A call in a transaction that an earlier failure aborted, or a block that ended normally
    after one: the transaction was (or will only be) rolled back."""


class Queries(Protocol):
    """Every query; a store and a transaction both answer them."""

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """On a store: a new transaction. On a transaction: a savepoint inside it."""
        ...

    # users and auth keys
    async def create_user(self, user: UserRecord, auth_key_hash: str) -> None:
        """Conflict (`users.email`) when the email has an account."""
        ...

    async def user_by_email(self, email: str) -> UserRecord | None: ...
    async def user_by_auth_key(self, auth_key_hash: str) -> UserRecord | None: ...
    async def users(self) -> list[UserRecord]:
        """Every user, by email."""
        ...

    async def set_auth_key(self, user_id: str, auth_key_hash: str, now: int) -> None:
        """Replace the user's auth key and revoke every session of theirs."""
        ...

    async def remove_user(self, user_id: str, now: int) -> list[str]:
        """Remove the user with their sessions, keys, shares and Spaces; the ids of the live
        Spaces they owned (oldest first, then by name)."""
        ...

    # sessions (a person's logins)
    async def create_session(self, session: SessionRecord, token_hash: str) -> None: ...
    async def session_by_token(self, token_hash: str, now: int) -> tuple[SessionRecord, UserRecord] | None:
        """The unrevoked session the token opens and its user, unless it expired by `now`."""
        ...

    async def touch_session(self, session_id: str, now: int) -> None: ...
    async def revoke_session(self, session_id: str, now: int) -> None: ...
    async def session_live(self, session_id: str, user_id: str, now: int) -> bool: ...

    # one-time sign-in links for the web page
    async def add_web_link(self, token_hash: str, user_id: str, now: int, expires_at: int) -> None: ...
    async def redeem_web_link(self, token_hash: str, now: int) -> UserRecord | None:
        """Spend the link: only the first call within its lifetime gets the user, even across
        broker processes (decided by the database)."""
        ...

    # SSH keys
    async def add_ssh_key(self, key: SshKeyRecord) -> None:
        """Conflict (`ssh_keys.fingerprint`) when any account has the key."""
        ...

    async def ssh_keys(self, user_id: str) -> list[SshKeyRecord]:
        """The user's keys, oldest first, then by comment and fingerprint."""
        ...

    async def remove_ssh_key(self, user_id: str, key_id: str) -> bool:
        """False when the user has no such key."""
        ...

    # Spaces and shares
    async def create_space(self, space: SpaceRecord, share_user_ids: list[str]) -> None:
        """Conflict (`spaces.name`) when the owner has a live Space of that name."""
        ...

    async def space(self, space_id: str) -> SpaceRecord | None:
        """The Space, deleted ones (tombstones) included."""
        ...

    async def visible_spaces(self, user_id: str) -> list[SpaceRecord]:
        """The live Spaces the user owns or that are shared with them (directly or with a group
        of theirs), each once, oldest first, then by name and owner's email."""
        ...

    async def is_shared_with(self, space_id: str, user_id: str) -> bool:
        """Whether the Space is shared with the user, directly or with a group of theirs."""
        ...

    async def shares(self, space_id: str) -> list[str]:
        """The emails the Space is shared with, sorted."""
        ...

    async def shares_of(self, space_ids: list[str]) -> dict[str, list[str]]:
        """`shares` of each Space, every one of `space_ids` a key."""
        ...

    async def update_shares(self, space_id: str, add: list[str], remove: list[str], now: int) -> None:
        """Share with the users `add` (those already shared with stay so) and stop sharing with
        `remove`."""
        ...

    async def delete_space(self, space_id: str, now: int) -> None:
        """Make the Space a tombstone (state `deleted`, its name free again), revoke its tokens,
        clear its agent credential, shares and shared ports (their addresses are free again).
        Deleting again keeps the first time."""
        ...

    # reusable Space keys
    async def create_space_key(self, key: SpaceKeyRecord, share_user_ids: list[str]) -> None:
        """Conflict (`space_keys.name`) when the owner has a key of that name not revoked. The
        key's `template` is kept by name (None: the default template at each registration), and
        stays when that template is removed."""
        ...

    async def space_keys(self, owner_id: str) -> list[SpaceKeyRecord]:
        """The owner's keys, revoked ones included, oldest first (those of one second by name)."""
        ...

    async def space_key_by_hash(self, key_hash: str) -> SpaceKeyRecord | None: ...
    async def space_key_shares(self, key_ids: list[str]) -> dict[str, list[str]]:
        """The emails each key shares its Spaces with, sorted; every one of `key_ids` a key."""
        ...

    async def space_key_user_ids(self, key_id: str) -> list[str]:
        """The ids of the users the key shares its Spaces with."""
        ...

    async def revoke_space_key(self, key_id: str, now: int) -> None:
        """Revoke the key (revoking again keeps the first time)."""
        ...

    async def spaces_of_key(self, key_id: str) -> list[SpaceRecord]:
        """The live Spaces the key made, oldest first (those of one second by name)."""
        ...

    async def space_for_container(self, key_id: str, container_name: str) -> SpaceRecord | None:
        """The live Space the key made for that container name, if any."""
        ...

    async def register_keyed_agent(
        self, key_id: str, space_id: str, instance_id: str, facts: str, credential_hash: str, now: int
    ) -> None:
        """Make the Space the container `instance_id`'s, with the new credential (any earlier
        container's credential dies), and count a use of the key."""
        ...

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
    async def authorized_keys(self, space_id: str) -> list[AuthorizedKeyRow]:
        """Every key that may log in to the Space, each once: the owner's first, then those of
        the people it is shared with directly or through a group, by role, email and fingerprint."""
        ...

    async def heartbeat(
        self, space_id: str, state: SpaceState, now: int, facts: str | None, ssh: str | None = None
    ) -> None:
        """Record what an agent reported; `facts` and `ssh` (JSON) are kept when None."""
        ...

    async def stop_silent_spaces(self, seen_before: int, now: int) -> list[str]:
        """Mark live Spaces (starting, running or stopping) last seen before `seen_before` stopped."""
        ...

    async def record_seen(self, seen: dict[str, int]) -> None:
        """Move each Space's last-seen time forward to the time given (never back)."""
        ...

    async def set_desired_state(self, space_id: str, desired: DesiredState, state: SpaceState, now: int) -> None:
        """What the owner asked for (up/down) and the state meanwhile; sshd's health is unknown
        until the agent reports again."""
        ...

    # the connection log: every stream (SSH, terminal, port), open and closed
    async def open_stream(self, stream: StreamRecord) -> None: ...
    async def close_stream(self, stream_id: str, now: int, bytes_in: int, bytes_out: int, reason: str) -> None: ...
    async def open_streams(self, space_id: str) -> list[StreamRecord]:
        """The Space's streams still open, oldest first, then by the person's email."""
        ...

    async def net_bytes(self, space_ids: list[str], since: int) -> dict[str, int]:
        """Bytes both ways of each Space's relayed connections that closed at or after `since`
        (the connection log); every one of `space_ids` a key."""
        ...

    async def close_dangling_streams(self, now: int, keep: Collection[str] = ()) -> None:
        """Close every connection the log still holds open but those logged by the replicas in
        `keep` (the live ones): a broker that stopped took its streams with it."""
        ...

    # shared ports (issue 12)
    async def user(self, user_id: str) -> UserRecord | None: ...
    async def user_handle(self, user_id: str) -> str | None: ...
    async def set_user_handle(self, user_id: str, handle: str) -> bool:
        """Give the user `handle` unless they have one; False if another user has it (a
        uniqueness failure: inside a transaction it aborts it, as a Conflict does)."""
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

    # templates
    async def add_template(self, template: TemplateRecord) -> None:
        """Conflict (`templates.name`) when the name is taken. A default template makes the
        previous default an ordinary one, in the same write."""
        ...

    async def templates(self) -> list[TemplateRecord]:
        """Every template, by name."""
        ...

    async def template(self, name: str) -> TemplateRecord | None: ...
    async def default_template(self) -> TemplateRecord | None: ...
    async def set_default_template(self, name: str) -> bool:
        """Make `name` the only default; False (nothing changed) when there is no such template."""
        ...

    async def remove_template(self, name: str) -> bool:
        """False when there is no such template. Spaces made from it keep its name and units."""
        ...

    # quotas
    async def set_user_quota(self, user_id: str, limits: Limits) -> None:
        """Replace the user's own limits (None: unset)."""
        ...

    async def set_group_quota(self, group_id: str, limits: Limits) -> None: ...
    async def quotas_of(self, user_id: str) -> tuple[Limits, list[tuple[str, Limits]]]:
        """The user's own limits, and each of their groups' (by group name)."""
        ...

    async def usage(self, user_id: str) -> Usage:
        """What the user's live Spaces use (`Usage`), counted by the database.

        The quota contract: a check and the change it allows are one transaction that calls
        `usage` first. Inside a transaction, `usage` holds the user's quota until the
        transaction ends: another transaction's `usage` of the same user waits for it, so two
        racing requests cannot both slip under a limit. SQLite gets this from BEGIN IMMEDIATE
        (one writer at a time); PostgreSQL locks the user's row first (`SELECT … FROM users
        WHERE id = $1 FOR UPDATE`) under READ COMMITTED, so the count that follows sees every
        change committed before the lock was granted."""
        ...

    # groups
    async def create_group(self, group: GroupRecord) -> None:
        """Conflict (`groups.name`) when the name is taken."""
        ...

    async def groups(self) -> list[GroupRecord]:
        """Every group with its members' emails, by name."""
        ...

    async def group(self, name: str) -> GroupRecord | None: ...
    async def remove_group(self, group_id: str) -> None:
        """Remove the group, its memberships and its shares."""
        ...

    async def add_group_members(self, group_id: str, user_ids: list[str], now: int) -> None:
        """Members already in it stay."""
        ...

    async def remove_group_members(self, group_id: str, user_ids: list[str]) -> None: ...
    async def update_group_shares(self, space_id: str, add: list[str], remove: list[str], now: int) -> None:
        """Share the Space with the groups `add` (ids) and stop sharing it with `remove`."""
        ...

    async def group_shares_of(self, space_ids: list[str]) -> dict[str, list[str]]:
        """The names of the groups each Space is shared with, sorted; every one of `space_ids` a key."""
        ...

    async def spaces_shared_with_group(self, group_id: str) -> list[SpaceRecord]:
        """The live Spaces shared with the group, oldest first, then by name and owner's email."""
        ...

    # access requests
    async def add_access_request(self, request: AccessRequestRecord, device_code_hash: str) -> None: ...
    async def access_requests(self, state: str | None = None) -> list[AccessRequestRecord]:
        """Requests (in `state`, or all), oldest first; those of one second by email (a person
        has one pending request at a time), never by their random ids, so every backend and
        every reload lists them alike."""
        ...

    async def access_request(self, request_id: str) -> AccessRequestRecord | None: ...
    async def access_request_by_device_code(self, device_code_hash: str) -> AccessRequestRecord | None: ...
    async def count_access_requests(self, email: str, client_address: str, since: int) -> tuple[int, int]:
        """How many requests since `since` named `email`, and how many came from `client_address`."""
        ...

    async def decide_access_request(
        self, request_id: str, state: str, by: str, now: int, user_id: str | None = None, space_id: str | None = None
    ) -> bool:
        """Move a pending, unexpired request to `state` (approved or denied); False, with nothing
        changed, when it is not pending any more (decided by a conditional update, so two admins
        cannot both decide it)."""
        ...

    async def claim_access_request(self, request_id: str, now: int) -> bool:
        """Approved → claimed, once: only the first caller gets True (the CLI's session)."""
        ...

    async def touch_access_request(self, request_id: str, now: int) -> None:
        """Record a poll (for slow_down)."""
        ...

    # the outbox: bus messages from processes that do not serve (broker.outbox)
    async def outbox_put(self, channel: str, payload: bytes, now: int) -> None:
        """Keep a message for the serving brokers to publish; each gets a larger id than every
        message put before it."""
        ...

    async def outbox_after(self, after: int, limit: int) -> list[tuple[int, str, bytes]]:
        """(id, channel, payload) of the messages with an id above `after`, oldest first, at
        most `limit`."""
        ...

    async def outbox_newest(self) -> int:
        """The id of the newest message kept; 0 when there is none."""
        ...

    async def outbox_trim(self, before: int) -> None:
        """Forget the messages put before `before` (a time)."""
        ...

    # token signing keys, when the database keeps them (sealed: broker.sealing)
    async def signing_keys(self) -> list[SealedKeyRecord]:
        """Every key, oldest first."""
        ...

    async def add_signing_key(self, key: SealedKeyRecord) -> None:
        """Conflict (`signing_keys.kid`) when a key of that id exists."""
        ...

    async def remove_signing_keys(self, kids: list[str]) -> None: ...

    # broker replicas sharing the database (issue 13), and where each agent's channel is held
    async def beat_replica(self, replica: ReplicaRecord) -> bool:
        """Register the replica, or move its address and `seen_at` to the record's. True when it
        was registered already; False when this beat registered it: its first, or one after
        `forget_replicas` removed it (it was silent that long, yet lives)."""
        ...

    async def live_replicas(self, seen_since: int) -> list[ReplicaRecord]:
        """The replicas that beat at `seen_since` or later, by id."""
        ...

    async def remove_replica(self, replica_id: str) -> None:
        """Forget the replica and the agent channels it held (it stopped)."""
        ...

    async def forget_replicas(self, seen_before: int) -> list[str]:
        """Forget the replicas last seen before `seen_before` and the agent channels they were
        recorded holding (gone: killed, cut off); their ids, sorted. Nothing else of theirs:
        the streams they logged stay (closed by `close_dangling_streams`)."""
        ...

    async def hold_agent_channel(self, space_id: str, replica_id: str, now: int) -> None:
        """The Space's agent control channel is now held by `replica_id` (nothing reported yet)."""
        ...

    async def report_agent(self, space_id: str, replica_id: str, terminals: str, listening: str) -> None:
        """What the agent reported on `replica_id` (JSON); nothing if another replica holds it now."""
        ...

    async def release_agent_channel(self, space_id: str, replica_id: str) -> None:
        """The channel closed on `replica_id`; nothing changes if another replica holds it now."""
        ...

    async def agent_channel(self, space_id: str) -> AgentChannelRecord | None:
        """Where the Space's agent channel is recorded held (by a replica alive or not: its
        `seen_at` says), and what the agent reported there."""
        ...

    # audit
    async def audit(self, now: int, actor: str, action: str, target: str, detail: str = "") -> None: ...

    async def audit_log(
        self, *, limit: int, since: int | None = None, actor: str = "", action: str = "", target: str = ""
    ) -> list[AuditRecord]:
        """The newest `limit` entries that match, oldest first. `action` matches itself and its
        sub-actions (`space` matches `space.create`)."""
        ...


class Transaction(Queries, Protocol):
    """Calls grouped into one commit, from `Store.transaction()`; `transaction()` on it opens a
    savepoint."""


class Store(Queries, Protocol):
    """A database as the broker holds it: queries, transactions, and its life."""

    @property
    def applied(self) -> list[str]:
        """The migrations opening this store applied (file names, in order)."""
        ...

    async def close(self) -> None: ...

    async def check_writable(self) -> None:
        """Commit a write that changes nothing; StoreUnavailable if the database cannot take it."""
        ...

    @property
    def unavailable(self) -> StoreUnavailable | None:
        """The last storage failure, while no write has succeeded since."""
        ...
