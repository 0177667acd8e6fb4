"""What every request handler and admin command works with: settings, store, keyring, clock."""

from __future__ import annotations

import copy
import errno
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from broker import replicas
from broker.bus import Bus, MemoryBus
from broker.hub import Hub
from broker.sealing import EncryptionKeyError, Sealer, parse_key, read_key_file
from broker.settings import Settings
from broker.signing import Keyring, KeySet
from broker.store import AgentChannelRecord, Queries, SchemaTooNew, Store, StoreError, StoreUnavailable
from broker.store.backends import is_postgres, open_store, shown
from pair.api.errors import PairError
from pair.api.models import AuthorizedKeys
from pair.api.terminal import TerminalInfo

DATA_DIR_HINT = "Pass the broker's data dir with --data-dir (or set PAIR_BROKER_DATA_DIR)."


@dataclass
class Context:
    settings: Settings
    database: Store  # the store as a whole: opened and closed with the app, where transactions begin
    keyring: KeySet  # files in the data dir, or sealed in the database (broker.sealed_keys)
    hub: Hub = field(default_factory=Hub)
    bus: Bus = field(default_factory=MemoryBus)  # broker.events publishes on it; see broker.bus
    clock: Callable[[], float] = field(default=time.time)
    # Heartbeat hot path: when agents were last seen (flushed to the store each sweep, so a
    # steady heartbeat writes nothing) and each Space's authorized keys (dropped on every change
    # any process sharing the bus makes, and after a few seconds for changes made elsewhere).
    seen: dict[str, int] = field(default_factory=dict)
    snapshots: dict[str, tuple[float, AuthorizedKeys]] = field(default_factory=dict)
    started_at: int = 0  # when this process started serving (agents reconnect after it)
    # Who hears that a person's SSH keys changed (with this context and the user's id):
    # `broker.snapshots` listens once the app starts. A plain list: the process that made the
    # change pushes to each Space the person reaches, and each push goes on the bus to wherever
    # that Space's agent is connected (broker.events.push), so one fan-out serves every replica.
    keys_listeners: list[KeysListener] = field(default_factory=list)
    # This process among the replicas sharing a PostgreSQL database (broker.peering starts it
    # with the app); None for a single broker.
    replica: replicas.Replica | None = None
    # What requests query: the store, or inside `transaction()` the transaction.
    store: Queries = field(init=False)

    def __post_init__(self) -> None:
        self.store = self.database

    def now(self) -> int:
        return int(self.clock())

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Context]:
        """This context with every store call made through it in one transaction, committed
        when the block ends and rolled back if it raises; inside another, a savepoint (see
        broker/store/__init__.py for what a Conflict leaves behind). The copy shares everything
        else with this context. Await nothing but the store inside the block."""
        async with self.store.transaction() as tx:
            bound = copy.copy(self)
            bound.store = tx
            yield bound

    def listen_keys_changed(self, listener: KeysListener) -> None:
        """Call `listener(ctx, user_id)` after each change of someone's SSH keys (once however
        often it is added)."""
        if listener not in self.keys_listeners:
            self.keys_listeners.append(listener)

    async def announce_keys_changed(self, user_id: str) -> None:
        for listener in list(self.keys_listeners):
            await listener(self, user_id)

    async def agent_connected(self, space_id: str) -> bool:
        """Whether the Space's agent control channel is open on this process or, among
        replicas, on another one that is alive (broker.replicas), and hears what is asked of it
        on the bus. StoreUnavailable when the registry cannot be read."""
        return await self.agent_channel(space_id) is not None

    async def agent_channel(self, space_id: str) -> object | None:
        """Which of the Space's agent channels is open (as `agent_connected` counts it), or None:
        only to compare with an earlier answer. A different one means the agent reconnected
        meanwhile, so what was asked of the old one (a stream) may be lost and must be asked
        again. StoreUnavailable when the registry cannot be read."""
        here = self.hub.hearing(space_id)
        if here is not None:
            return here
        held = await self._held_elsewhere(space_id)
        return None if held is None else (held.replica.id, held.attached_at)

    async def agent_report(self, space_id: str) -> AgentReport:
        """What the Space's agent last reported (its terminals, the ports listening in the
        container), wherever its channel is held; nothing while it is not connected."""
        agent = self.hub.agents.get(space_id)
        if agent is not None:
            return AgentReport(list(agent.terminals), agent.listening)
        held = await self._held_elsewhere(space_id)
        if held is None:
            return AgentReport([], ())
        terminals = msgspec.json.decode(held.terminals or "[]", type=list[TerminalInfo])
        return AgentReport(terminals, tuple(msgspec.json.decode(held.listening or "[]", type=list[int])))

    async def _held_elsewhere(self, space_id: str) -> AgentChannelRecord | None:
        """The record of the Space's agent channel held by another replica that is alive."""
        if self.replica is None:
            return None
        held = await self.store.agent_channel(space_id)
        if held is None or held.replica.id == self.replica.id or not replicas.alive(held.replica, self.now()):
            return None
        return held

    async def close(self) -> None:
        """Let the bus and the store go (what `open_context` opened)."""
        try:
            await self.bus.close()
        finally:
            await self.database.close()


KeysListener = Callable[[Context, str], Awaitable[None]]


@dataclass(frozen=True)
class AgentReport:
    """What an agent reports besides its state: its terminals and the ports listening in the container."""

    terminals: list[TerminalInfo]
    listening: tuple[int, ...]


def timestamp(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class DataDirError(PairError):
    """The data dir cannot be used: missing, not writable, full, or its database unusable."""


class DatabaseUnavailable(DataDirError):
    """The database cannot be used right now (`unavailable` says why: its server unreachable,
    a full disk…): the environment's fault, which `serve` may wait out (broker.database_wait)."""

    def __init__(self, unavailable: StoreUnavailable) -> None:
        super().__init__(str(unavailable), unavailable.hint)
        self.unavailable = unavailable


async def open_context(settings: Settings, *, create: bool, discard_unreadable_keys: bool = False) -> Context:
    """Open and migrate the database and load the signing keys, in the event loop that will use
    them (async drivers bind to one), with the bus that reaches the other processes sharing the
    database (PostgreSQL's LISTEN/NOTIFY; in-process for SQLite). With `create` (only `serve`,
    on first start), make the data dir (0700), a SQLite database and the first key when
    missing; without it, a data dir that holds no SQLite database is refused rather than
    filled. With an encryption key (always on PostgreSQL) the keys are sealed in the database,
    and a SQLite data dir's key files move there on first use. `discard_unreadable_keys`: drop
    sealed keys this encryption key cannot open instead of refusing to start (the old key is
    lost). The caller closes it (`ctx.close()`).

    Raises DataDirError (one sentence and a hint) when the data dir, the database or the keys
    cannot be used: DatabaseUnavailable when the database cannot be used right now (its server
    unreachable, a full disk)."""
    database = settings.database_location
    sealer = sealer_for(settings)
    if is_postgres(database) and sealer is None:
        raise DataDirError(
            "On PostgreSQL the signing keys live in the database, sealed with an encryption key, and none is set.",
            "Set PAIR_BROKER_ENCRYPTION_KEY (or --encryption-key-file) to the same key on every replica. "
            "Make one with: openssl rand -base64 32",
        )
    if isinstance(database, Path) and not create and not database.is_file():
        raise DataDirError(
            f"No broker database in {database.parent}.",
            f"{DATA_DIR_HINT} `pair-broker serve` creates one on its first start. A broker on PostgreSQL"
            " keeps none there: pass --database (or set PAIR_BROKER_DATABASE_URL) and the encryption key.",
        )
    try:
        if create:
            settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        store = await open_store(database)
    except OSError as exc:
        raise data_dir_error(settings.data_dir, exc) from exc
    except StoreUnavailable as exc:
        raise DatabaseUnavailable(exc) from exc
    except SchemaTooNew as exc:
        raise DataDirError(str(exc), exc.hint) from exc
    except StoreError as exc:
        raise DataDirError(str(exc), f"Check the database {shown(database)}.") from exc
    try:
        if isinstance(database, Path):
            database.chmod(0o600)
        keyring = await _keyring(settings, store, sealer, discard_unreadable_keys)
    except OSError as exc:
        await store.close()
        raise data_dir_error(settings.keys_dir, exc) from exc
    except StoreUnavailable as exc:  # the server went away between the migrations and the keys
        await store.close()
        raise DatabaseUnavailable(exc) from exc
    except BaseException:
        await store.close()
        raise
    ctx = Context(settings=settings, database=store, keyring=keyring)
    if is_postgres(database):
        from broker.postgres_bus import PostgresBus

        try:
            ctx.bus = await PostgresBus.open(str(database))
        except StoreUnavailable as exc:
            await store.close()
            raise DatabaseUnavailable(exc) from exc
    return ctx


def sealer_for(settings: Settings) -> Sealer | None:
    """The sealer of the configured encryption key, if one is. DataDirError when it is unusable."""
    key = encryption_key(settings)
    return None if key is None else Sealer(key)


def encryption_key(settings: Settings) -> bytes | None:
    """The configured encryption key (32 bytes), if one is. DataDirError when it is unusable."""
    try:
        if settings.encryption_key_file is not None:
            return read_key_file(settings.encryption_key_file)
        if settings.encryption_key:
            return parse_key(settings.encryption_key, "PAIR_BROKER_ENCRYPTION_KEY")
    except EncryptionKeyError as exc:
        raise DataDirError(exc.message, exc.hint) from exc
    return None


async def _keyring(settings: Settings, store: Store, sealer: Sealer | None, discard_unreadable: bool) -> KeySet:
    retain = settings.max_token_ttl + 3600
    if sealer is None:
        files = Keyring(settings.keys_dir, retain_seconds=retain)
        files.load()
        return files
    from broker.sealed_keys import SealedKeyring, UnreadableKeys

    sealed = SealedKeyring(store, sealer, retain_seconds=retain)
    # A SQLite broker given an encryption key moves its own key files in; PostgreSQL never
    # takes files from wherever the command runs (`pair-broker migrate` moves a broker's keys).
    own_files = settings.keys_dir if isinstance(settings.database_location, Path) else None
    if discard_unreadable:
        await sealed.discard_unreadable()
    try:
        # Discarding is for `keys rotate`, which adds the one new key itself.
        await sealed.load(import_from=own_files, make_first=not discard_unreadable)
    except UnreadableKeys as exc:
        raise DataDirError(
            f"The signing keys in the database ({', '.join(exc.kids)}) do not open with this encryption key.",
            "Give this broker the encryption key the other replicas use. If that key is lost, "
            "`pair-broker keys rotate --discard-unreadable` removes them and makes a new one "
            "(Space tokens they signed stop working; sessions and running agents do not notice).",
        ) from exc
    return sealed


PROBE_BYTES = 1 << 20  # a start-up probe: room for a few hundred writes, or the broker says so now


async def check_writable(ctx: Context) -> None:
    """What `serve` checks before it listens: it can write a file into the data dir and commit
    to its database. Raises DataDirError otherwise (DatabaseUnavailable for the database)."""
    probe = ctx.settings.data_dir / f".write-probe-{os.getpid()}"
    try:
        with probe.open("wb") as f:
            f.write(bytes(PROBE_BYTES))
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise data_dir_error(ctx.settings.data_dir, exc) from exc
    finally:
        probe.unlink(missing_ok=True)
    try:
        await ctx.database.check_writable()
    except StoreUnavailable as exc:
        raise DatabaseUnavailable(exc) from exc


def data_dir_error(path: Path, exc: OSError) -> DataDirError:
    """One sentence and a hint for an OSError on `path` in the data dir (or a key file in it)."""
    what = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        hint = f"Free space on the disk that holds {path}."
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        hint = f"Make {path} writable by the broker's user ({_user()}), or pass another --data-dir."
    else:
        hint = DATA_DIR_HINT
    return DataDirError(f"Cannot write to {path}: {what}.", hint)


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (KeyError, ImportError):
        return f"uid {os.getuid()}"
