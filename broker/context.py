"""What every request handler and admin command works with: settings, store, keyring, clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from broker.hub import Hub
from broker.settings import Settings
from broker.signing import Keyring
from broker.store import Store
from pair.api.models import AuthorizedKeys


@dataclass
class Context:
    settings: Settings
    store: Store
    keyring: Keyring
    hub: Hub = field(default_factory=Hub)
    clock: Callable[[], float] = field(default=time.time)
    # Heartbeat hot path: when agents were last seen (flushed to the store each sweep, so a
    # steady heartbeat writes nothing) and each Space's authorized keys (dropped on every change
    # this process makes, and after a few seconds for changes made elsewhere).
    seen: dict[str, int] = field(default_factory=dict)
    snapshots: dict[str, tuple[float, AuthorizedKeys]] = field(default_factory=dict)
    started_at: int = 0  # when this process started serving (agents reconnect after it)

    def now(self) -> int:
        return int(self.clock())


def timestamp(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def open_context(settings: Settings) -> Context:
    """Create the data dir (0700), open and migrate the database, load or create the signing key."""
    from broker.store.sqlite import SqliteStore

    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = SqliteStore(settings.database_path)
    settings.database_path.chmod(0o600)
    keyring = Keyring(settings.keys_dir, retain_seconds=settings.max_token_ttl + 3600)
    keyring.load()
    return Context(settings=settings, store=store, keyring=keyring)
