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

from broker.bus import Bus, MemoryBus
from broker.hub import Hub
from broker.settings import Settings
from broker.signing import Keyring
from broker.store import Queries, Store, StoreUnavailable
from broker.store.backends import open_store
from pair.api.errors import PairError
from pair.api.models import AuthorizedKeys

DATA_DIR_HINT = "Pass the broker's data dir with --data-dir (or set PAIR_BROKER_DATA_DIR)."


@dataclass
class Context:
    settings: Settings
    database: Store  # the store as a whole: opened and closed with the app, where transactions begin
    keyring: Keyring
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


KeysListener = Callable[[Context, str], Awaitable[None]]


def timestamp(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class DataDirError(PairError):
    """The data dir cannot be used: missing, not writable, full, or its database unusable."""


async def open_context(settings: Settings, *, create: bool) -> Context:
    """Open and migrate the database and load the signing keys, in the event loop that will use
    them (async drivers bind to one). With `create` (only `serve`, on first start), make the data
    dir (0700), the database and the first key when missing; without it, a data dir that holds no
    database is refused rather than filled. The caller closes `ctx.database`.

    Raises DataDirError (one sentence and a hint) when the data dir or database cannot be used."""
    if not create and not settings.database_path.is_file():
        raise DataDirError(
            f"No broker database in {settings.data_dir}.",
            f"{DATA_DIR_HINT} `pair-broker serve` creates one on its first start.",
        )
    try:
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        store = await open_store(settings.database_path)
    except OSError as exc:
        raise data_dir_error(settings.data_dir, exc) from exc
    except StoreUnavailable as exc:
        raise DataDirError(str(exc), exc.hint) from exc
    try:
        settings.database_path.chmod(0o600)
        keyring = Keyring(settings.keys_dir, retain_seconds=settings.max_token_ttl + 3600)
        keyring.load()
    except OSError as exc:
        await store.close()
        raise data_dir_error(settings.keys_dir, exc) from exc
    return Context(settings=settings, database=store, keyring=keyring)


PROBE_BYTES = 1 << 20  # a start-up probe: room for a few hundred writes, or the broker says so now


async def check_writable(ctx: Context) -> None:
    """What `serve` checks before it listens: it can write a file into the data dir and commit
    to its database. Raises DataDirError otherwise."""
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
        raise DataDirError(str(exc), exc.hint) from exc


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
