"""Moving a SQLite broker's data into PostgreSQL (`pair-broker migrate --from … --to …`).

Both databases are first brought to this release's schema (the source in place, as `serve`
would). Then, in ONE transaction on the target: every table of the source is copied with COPY,
parents before the tables whose foreign keys name them; identity sequences move past the copied
ids; the source's signing key files are sealed in with the encryption key (or the sealed keys it
already holds are checked to open with it); and every table's row count is compared with the
source's. Anything amiss rolls it all back: the target is either a full copy or as it was. A
target that holds data is refused unless `replace` (then it is emptied in the same transaction).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker.sealed_keys import SealedKeyring
from broker.sealing import Sealer
from broker.store import StoreError
from broker.store.postgres import PostgresStore, PostgresTransaction
from broker.store.sqlite import SqliteStore


class TargetNotEmpty(StoreError):
    """The target database holds rows (`holding`: table -> count) and `replace` was not given."""

    def __init__(self, holding: dict[str, int]) -> None:
        listed = ", ".join(f"{table}: {n}" for table, n in sorted(holding.items()))
        super().__init__(f"The target database already holds data ({listed}).")
        self.holding = holding


@dataclass
class Moved:
    counts: dict[str, int]  # table -> rows copied (and found in the target afterwards)
    sealed_files: list[str] = field(default_factory=list)  # key ids sealed in from the source's files
    emptied: dict[str, int] = field(default_factory=dict)  # what `replace` removed from the target


async def move(
    source: Path, target: str, *, sealer: Sealer, replace: bool = False, retain_seconds: int = 90000
) -> Moved:
    """Copy the SQLite broker database `source` (and its data dir's signing-keys files) into the
    PostgreSQL database `target`. StoreError (TargetNotEmpty, a schema that differs, a count that
    does not match) with nothing written; StoreUnavailable when either cannot be used;
    broker.sealed_keys.UnreadableKeys when sealed keys in the source do not open with `sealer`."""
    if not source.is_file():
        raise StoreError(f"There is no SQLite database at {source}.")
    src = SqliteStore(source)
    try:
        dst = await PostgresStore.open(target)
        try:
            if src.schema_version() != await _version(dst):
                raise StoreError("The two databases are at different schema versions.")
            async with dst.transaction() as tx:
                moved = await _copy(src, tx, replace)
                keyring = SealedKeyring(tx, sealer, retain_seconds=retain_seconds)
                moved.sealed_files = await keyring.load(import_from=source.parent / "signing-keys")
            return moved
        finally:
            await dst.close()
    finally:
        src.close_now()


async def _version(store: PostgresStore) -> int:
    async with store.transaction() as tx:
        return await tx.schema_version()


async def _copy(src: SqliteStore, tx: PostgresTransaction, replace: bool) -> Moved:
    tables = src.tables()
    target_tables = await tx.tables()
    missing = sorted(set(tables) - set(target_tables))
    if missing:
        raise StoreError(f"The target database has no table {', '.join(missing)}.")
    holding = {t: n for t in target_tables if (n := await tx.count(t))}
    if holding and not replace:
        raise TargetNotEmpty(holding)
    if holding:
        await tx.empty(target_tables)
    counts: dict[str, int] = {}
    for table in tables:
        columns = src.columns(table)
        types = await tx.columns(table)
        if set(columns) != set(types):
            raise StoreError(
                f"The table {table} differs: {sorted(columns)} in the source, {sorted(types)} in the target."
            )
        flags = [i for i, c in enumerate(columns) if types[c] == "boolean"]  # SQLite keeps them as 0/1
        for batch in src.batches(table, columns):
            await tx.copy_rows(table, columns, [_converted(row, flags) for row in batch])
        counts[table] = src.count(table)
    await tx.restart_identities()
    for table, expected in counts.items():
        found = await tx.count(table)
        if found != expected:
            raise StoreError(f"The copy of {table} holds {found} rows, not {expected}; nothing was written.")
    return Moved(counts, emptied=holding)


def _converted(row: tuple[Any, ...], flags: list[int]) -> tuple[Any, ...]:
    if not flags:
        return row
    values = list(row)
    for i in flags:
        values[i] = None if values[i] is None else bool(values[i])
    return tuple(values)
