"""Token signing keys kept in the database, sealed with the broker's encryption key
(broker.sealing), so that every replica signs and verifies with the same keys and a dump of the
database alone reveals none of them.

Replicas learn of keys another one added (`pair-broker keys rotate`) by reading the table again
at most every REFRESH_SECONDS, and at once when a token names a key they do not know.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from broker.errors import Problem
from broker.sealing import Sealer, SealError
from broker.signing import KeySet, SigningKey, from_pem, generate, private_pem, retired
from broker.store import Conflict, Queries, SealedKeyRecord

log = logging.getLogger("pair.broker")

REFRESH_SECONDS = 5.0


class UnreadableKeys(Problem):
    """Keys in the database that this encryption key does not open (`kids`): at start-up the
    broker refuses to serve (broker.context); a serving replica answers 503 to what needs the
    keys (another process sealed keys with another encryption key: `keys rotate
    --discard-unreadable` with a new key while this replica runs with the old one)."""

    def __init__(self, kids: list[str]) -> None:
        super().__init__(
            503,
            "This broker replica cannot open the token signing keys in its database:"
            " its encryption key is not the one that sealed them.",
            "Try again later; the broker's operator can see why in its log.",
            "unavailable",
        )
        self.kids = kids


def seal(sealer: Sealer, key: SigningKey) -> SealedKeyRecord:
    return SealedKeyRecord(key.kid, key.created_at, sealer.seal(_name(key.kid), private_pem(key).encode()))


def _name(kid: str) -> str:
    return f"signing_keys/{kid}"  # the associated data: a sealed key opens only as its own row


class SealedKeyring(KeySet):
    def __init__(self, store: Queries, sealer: Sealer, *, retain_seconds: int) -> None:
        super().__init__(retain_seconds=retain_seconds)
        self._store = store
        self._sealer = sealer
        self._seen: list[tuple[str, int]] | None = None  # the rows the keys were last read from
        self._read_at = -REFRESH_SECONDS
        self._unreadable: list[str] = []  # keys the last read could not open (logged once)

    async def load(self, *, import_from: Path | None = None, make_first: bool = True) -> list[str]:
        """Read the keys. On a database without any: import the key files in `import_from` (a
        data dir's signing-keys), else make the first key (unless not `make_first`: the caller
        adds one itself). The ids imported. UnreadableKeys when a key in the database does not
        open with this encryption key."""
        imported: list[str] = []
        if not await self._store.signing_keys():
            imported = await import_files(self._store, self._sealer, import_from) if import_from else []
            if not imported and make_first:
                await self._store.add_signing_key(seal(self._sealer, generate()))
        await self.update(force=True)
        return imported

    async def update(self, *, force: bool = False) -> None:
        """As KeySet.update; UnreadableKeys (a 503) while the database holds keys this
        encryption key does not open, said in the log once per set of such keys."""
        now = time.monotonic()
        if not force and now - self._read_at < REFRESH_SECONDS:
            if self._unreadable:
                raise UnreadableKeys(self._unreadable)
            return
        rows = await self._store.signing_keys()
        self._read_at = now
        seen = [(r.kid, r.created_at) for r in rows]
        if seen == self._seen or not rows:
            return
        keys, unreadable = [], []
        for row in rows:
            try:
                keys.append(from_pem(row.kid, row.created_at, self._sealer.open(_name(row.kid), row.sealed)))
            except SealError:
                unreadable.append(row.kid)
        if unreadable:
            if unreadable != self._unreadable and self._seen is not None:  # serving: start-up says it itself
                log.error(
                    "the signing keys %s in the database do not open with this replica's encryption key;"
                    " requests that sign or verify tokens get 503 until it runs with the key that sealed them",
                    ", ".join(unreadable),
                )
            self._unreadable = unreadable
            raise UnreadableKeys(unreadable)
        if self._unreadable:
            log.warning("the signing keys in the database open with this replica's encryption key again")
        self._unreadable = []
        self._install(keys)
        self._seen = seen

    async def add_key(self, now: int | None = None) -> SigningKey:
        # The newest key signs: a key added within the second of the last one still comes after it.
        newest = max((r.created_at for r in await self._store.signing_keys()), default=0)
        key = generate(max(int(time.time()) if now is None else now, newest + 1))
        await self._store.add_signing_key(seal(self._sealer, key))
        rows = await self._store.signing_keys()
        await self._store.remove_signing_keys(
            retired([(r.kid, r.created_at) for r in rows], key.created_at, self.retain_seconds)
        )
        await self.update(force=True)
        return key

    async def discard_unreadable(self) -> list[str]:
        """Remove the keys this encryption key does not open (the key that sealed them is lost:
        tokens they signed can no longer be verified anyway); their ids."""
        lost = []
        for row in await self._store.signing_keys():
            try:
                self._sealer.open(_name(row.kid), row.sealed)
            except SealError:
                lost.append(row.kid)
        await self._store.remove_signing_keys(lost)
        return lost


async def import_files(store: Queries, sealer: Sealer, directory: Path) -> list[str]:
    """Seal the key files of a data dir's `signing-keys` into the database (a key already there
    is left as it is); the ids added. The files stay: delete them once every broker uses the
    database (docs/operations.md)."""
    added = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        data = json.loads(path.read_text())
        key = from_pem(str(data["kid"]), int(data["created_at"]), str(data["private_key"]))
        try:
            async with store.transaction() as attempt:  # a savepoint inside a transaction
                await attempt.add_signing_key(seal(sealer, key))
        except Conflict:
            continue  # another replica sealed it first
        added.append(key.kid)
    if added:
        log.info("sealed %d signing key(s) from %s into the database", len(added), directory)
    return added
