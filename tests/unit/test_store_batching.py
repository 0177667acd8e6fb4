"""broker.store.batching.Batched: lookups asked while a statement runs share the next one; each
is answered by a statement that started after it was asked; a failure reaches every caller of
its batch and no other."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.store.batching import MAX_KEYS, Batched


class Fetches:
    """A fake `fetch` that records each call's keys and answers once released."""

    def __init__(self, fail: set[str] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.release = asyncio.Event()
        self.fail = fail or set()
        self.table: dict[str, str] = {}

    async def called(self, times: int) -> None:
        while len(self.calls) < times:
            await asyncio.sleep(0)

    async def __call__(self, keys: list[str]) -> dict[str, str]:
        self.calls.append(keys)
        snapshot = dict(self.table)  # what the statement sees: the table as it started
        await self.release.wait()
        if self.fail & set(keys):
            raise RuntimeError("refused")
        return {k: snapshot[k] for k in keys if k in snapshot}


def test_lookups_that_arrive_while_one_runs_share_the_next_statement() -> None:
    async def scenario() -> None:
        fetch = Fetches()
        fetch.table = {"a": "1", "b": "2", "c": "3"}
        batched = Batched(fetch)
        first = asyncio.create_task(batched.get("a"))
        await fetch.called(1)
        assert fetch.calls == [["a"]]  # alone, it goes at once
        fetch.table["a"] = "written"  # committed after the first statement started
        later = [asyncio.create_task(batched.get(k)) for k in ("b", "a", "missing", "b")]
        await asyncio.sleep(0)
        fetch.release.set()
        assert await first == "1"
        assert await asyncio.gather(*later) == ["2", "written", None, "2"]
        assert fetch.calls == [["a"], ["b", "a", "missing"]]  # one statement for all four, each key once

    asyncio.run(scenario())


def test_a_failure_reaches_the_callers_of_its_batch_only() -> None:
    async def scenario() -> None:
        fetch = Fetches(fail={"bad"})
        fetch.table = {"good": "1"}
        batched = Batched(fetch)
        one = asyncio.create_task(batched.get("bad"))
        await fetch.called(1)
        two = asyncio.create_task(batched.get("good"))
        fetch.release.set()
        with pytest.raises(RuntimeError, match="refused"):
            await one
        assert await two == "1"

    asyncio.run(scenario())


def test_a_cancelled_caller_does_not_stop_the_others() -> None:
    async def scenario() -> None:
        fetch = Fetches()
        fetch.table = {"a": "1"}
        batched = Batched(fetch)
        gone = asyncio.create_task(batched.get("a"))
        stays = asyncio.create_task(batched.get("a"))
        await fetch.called(1)
        gone.cancel()
        fetch.release.set()
        assert await stays == "1"
        assert gone.cancelled()

    asyncio.run(scenario())


@given(st.lists(st.sampled_from([f"k{n}" for n in range(MAX_KEYS + 50)]), min_size=1, max_size=1200))
def test_every_lookup_gets_its_own_keys_value_in_statements_of_at_most_max_keys(keys: list[str]) -> None:
    async def scenario() -> None:
        fetch = Fetches()
        fetch.table = {k: k.upper() for k in keys[::2]}
        fetch.release.set()
        batched = Batched(fetch)
        answers = await asyncio.gather(*(batched.get(k) for k in keys))
        assert answers == [fetch.table.get(k) for k in keys]
        assert all(0 < len(call) <= MAX_KEYS and len(set(call)) == len(call) for call in fetch.calls)

    asyncio.run(scenario())
