"""Lookups by key merged into one statement: while one statement runs, the lookups that arrive
wait for the next one, which asks for all of their keys at once (`= ANY(…)`), as group commit
does for writes; and writes of one kind merged likewise (`Grouped`: one statement over
`unnest(…)` of their rows). One caller alone pays one round trip, as before; ten thousand agents
heartbeating pay a few hundred a second instead of two for each (broker.store.postgres).

Nothing is remembered: each lookup is answered by a statement that started after it was asked,
so it sees every write committed before it (as a statement of its own would). aiodataloader
batches what arrives within one turn of the event loop and runs the batches side by side, which
under load makes many small statements competing for the pool; here one runs at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T")

MAX_KEYS = 500  # keys (or rows written) in one statement at most


class Batched(Generic[K, V]):
    """`await batched.get(key)`: `fetch(keys)`'s value for `key` (None when it returns none),
    `fetch` taking every key asked for while its previous call ran (at most MAX_KEYS,
    each once). What `fetch` raises is raised to every caller of that batch."""

    def __init__(self, fetch: Callable[[list[K]], Awaitable[dict[K, V]]]) -> None:
        self._fetch = fetch
        self._waiting: dict[K, list[asyncio.Future[V | None]]] = {}
        self._runner: asyncio.Task[None] | None = None

    async def get(self, key: K) -> V | None:
        future: asyncio.Future[V | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(future)
        if self._runner is None:
            self._runner = asyncio.create_task(self._run())
        return await future

    async def _run(self) -> None:
        batch: dict[K, list[asyncio.Future[V | None]]] = {}
        try:
            while self._waiting:
                keys = list(self._waiting)[:MAX_KEYS]
                batch = {key: self._waiting.pop(key) for key in keys}
                try:
                    found = await self._fetch(keys)
                except Exception as exc:
                    for future in _pending(batch):
                        future.set_exception(exc)
                    continue
                for key, futures in batch.items():
                    value = found.get(key)
                    for future in futures:
                        if not future.done():  # its caller was cancelled meanwhile
                            future.set_result(value)
        except asyncio.CancelledError:  # the loop is closing: nobody gets an answer
            for future in [*_pending(batch), *_pending(self._waiting)]:
                future.cancel()
            self._waiting.clear()
            raise
        finally:
            self._runner = None


def _pending(futures: dict[K, list[asyncio.Future[V | None]]]) -> list[asyncio.Future[V | None]]:
    return [future for waiting in futures.values() for future in waiting if not future.done()]


class Grouped(Generic[T]):
    """`await grouped.run(item)`: `write(items)` with every item submitted while its previous
    call ran (at most MAX_KEYS), in the order submitted, duplicates kept; returns once the call
    that took `item` has. What `write` raises is raised to every caller of that call."""

    def __init__(self, write: Callable[[list[T]], Awaitable[None]]) -> None:
        self._write = write
        self._waiting: list[tuple[T, asyncio.Future[None]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def run(self, item: T) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._runner is None:
            self._runner = asyncio.create_task(self._run())
        await future

    async def _run(self) -> None:
        batch: list[tuple[T, asyncio.Future[None]]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:MAX_KEYS], self._waiting[MAX_KEYS:]
                try:
                    await self._write([item for item, _ in batch])
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for _, future in batch:
                    if not future.done():  # its caller was cancelled meanwhile
                        future.set_result(None)
        except asyncio.CancelledError:  # the loop is closing: nobody gets an answer
            for _, future in [*batch, *self._waiting]:
                future.cancel()
            self._waiting.clear()
            raise
        finally:
            self._runner = None
