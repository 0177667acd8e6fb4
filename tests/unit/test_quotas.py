"""Quota arithmetic (seed 001: a person's limits are their own plus the sum of their groups'),
over generated inputs: the pure rules in broker.quotas, and the usage each backend counts."""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker import quotas
from broker.errors import Problem
from broker.store import GroupRecord, Limits, Store, Usage, UserRecord
from pair.api.models import SpaceState
from pair.cli.quota import rows
from tests.support import stores
from tests.support.stores import NOW, space

limits_st = st.builds(
    Limits,
    spaces=st.none() | st.integers(0, 50),
    compute=st.none() | st.integers(0, 50),
    storage=st.none() | st.integers(0, 50),
)
usage_st = st.builds(Usage, spaces=st.integers(0, 60), compute=st.integers(0, 60), storage=st.integers(0, 60))


@given(own=limits_st, groups=st.lists(limits_st, max_size=4))
def test_a_limit_is_the_sum_of_those_set_and_unlimited_only_when_none_is(own: Limits, groups: list[Limits]) -> None:
    combined = quotas.combine(own, groups)
    for resource in quotas.RESOURCES:
        values = [getattr(q, resource) for q in (own, *groups)]
        set_ = [v for v in values if v is not None]
        assert getattr(combined, resource) == (sum(set_) if set_ else None)


@given(own=limits_st, groups=st.lists(limits_st, max_size=3), more=limits_st)
def test_joining_a_group_never_lowers_a_limit(own: Limits, groups: list[Limits], more: Limits) -> None:
    before, after = quotas.combine(own, groups), quotas.combine(own, [*groups, more])
    for resource in quotas.RESOURCES:
        b, a = getattr(before, resource), getattr(after, resource)
        assert b is None or (a is not None and a >= b)


def test_the_seeds_examples() -> None:
    assert quotas.combine(Limits(compute=4), [Limits(compute=6)]).compute == 10  # user 4 + group 6
    assert quotas.combine(Limits(), [Limits(compute=6), Limits(compute=5)]).compute == 11  # two groups add up
    assert quotas.combine(Limits(), [Limits()]).compute is None  # set nowhere: unlimited
    ten = Limits(compute=10)
    assert quotas.excess(ten, Usage(compute=9), quotas.Need("template a", compute=3)) == ("compute", 10, 9, 3)
    assert quotas.excess(ten, Usage(compute=6), quotas.Need("template a", compute=3)) is None
    refusal = quotas.refusal("compute", 10, 9, 3, "template large")
    assert refusal.message == "You are using 9 of 10 compute units; template large needs 3."
    assert (refusal.status, refusal.code) == (403, "quota_exceeded")


@given(limits=limits_st, usage=usage_st, need=st.builds(quotas.Need, st.just("x"), *[st.integers(0, 10)] * 3))
def test_a_need_is_refused_exactly_when_it_would_pass_a_set_limit(
    limits: Limits, usage: Usage, need: quotas.Need
) -> None:
    over = quotas.excess(limits, usage, need)
    passes = [
        r
        for r in quotas.RESOURCES
        if getattr(limits, r) is not None
        and getattr(need, r) > 0
        and getattr(usage, r) + getattr(need, r) > getattr(limits, r)
    ]
    assert (over[0] if over else None) == (passes[0] if passes else None)


@given(limits=limits_st, usage=usage_st, need=st.builds(quotas.Need, st.just("x"), *[st.integers(0, 10)] * 3))
def test_a_check_counts_usage_only_when_a_limit_bounds_the_need(
    limits: Limits, usage: Usage, need: quotas.Need
) -> None:
    """quotas.check asks the store's usage (a scan of the owner's Spaces, and PostgreSQL's row
    lock) only when some set limit bounds what the change adds; its answer is excess's either way."""
    counted: list[str] = []

    class Reader:  # the two store reads quotas.check makes
        async def quotas_of(self, user_id: str) -> tuple[Limits, list[tuple[str, Limits]]]:
            return limits, []

        async def usage(self, user_id: str) -> Usage:
            counted.append(user_id)
            return usage

    ctx = type("Ctx", (), {"store": Reader()})()
    bounded = any(getattr(limits, r) is not None and getattr(need, r) > 0 for r in quotas.RESOURCES)
    try:
        asyncio.run(quotas.check(ctx, "u_me", need))
        refused = None
    except Problem as exc:
        refused = exc
    assert counted == (["u_me"] if bounded else [])
    over = quotas.excess(limits, usage, need)
    assert (refused is not None) == (over is not None)


# -- what the store counts ---------------------------------------------------------------------

LIVE_AND_STOPPED: list[SpaceState] = ["created", "starting", "running", "stopping", "stopped"]
space_st = st.tuples(
    st.sampled_from(LIVE_AND_STOPPED),
    st.integers(0, 9),  # compute units
    st.integers(0, 9),  # storage units
    st.booleans(),  # deleted
    st.booleans(),  # owned by alice (else bob)
)


@pytest.mark.parametrize("backend_name", ["sqlite", "postgresql"])
@settings(max_examples=25, deadline=None)
@given(
    spaces=st.lists(space_st, max_size=8),
    own=limits_st,
    group_limits=st.lists(limits_st, max_size=3),
    member_of=st.lists(st.booleans(), min_size=3, max_size=3),
)
def test_the_store_counts_usage_and_limits_as_the_rules_say(
    request: pytest.FixtureRequest,
    backend_name: str,
    spaces: list[tuple[SpaceState, int, int, bool, bool]],
    own: Limits,
    group_limits: list[Limits],
    member_of: list[bool],
) -> None:
    async def check(directory: Path) -> None:
        with stores.backend(request, backend_name, directory) as backend:  # a fresh database per example
            await counted(await backend.open())

    async def counted(store: Store) -> None:
        try:
            await stores.add_people(store)
            await store.set_user_quota("u_alice", own)
            for i, (state, compute, storage, deleted, alices) in enumerate(spaces):
                record = dataclasses.replace(
                    space(f"sp_{i}", "u_alice" if alices else "u_bob", f"s{i}"),
                    compute_units=compute,
                    storage_units=storage,
                    template="t",
                )
                await store.create_space(record, [])
                await store.heartbeat(record.id, state, NOW, None)
                if deleted:
                    await store.delete_space(record.id, NOW)
            expected_groups = []
            for i, limits in enumerate(group_limits):
                await store.create_group(GroupRecord(f"grp_{i}", f"g{i}", NOW, limits))
                if member_of[i]:
                    await store.add_group_members(f"grp_{i}", ["u_alice"], NOW)
                    expected_groups.append((f"g{i}", limits))

            live = [s for s in spaces if s[4] and not s[3]]
            assert await store.usage("u_alice") == Usage(
                spaces=len(live),
                compute=sum(s[1] for s in live if s[0] in quotas.COMPUTE_STATES),
                storage=sum(s[2] for s in live),
            )
            async with store.transaction() as tx:  # the same answer inside a transaction (the quota lock)
                assert await tx.usage("u_alice") == await store_usage_outside(live)
            assert await store.quotas_of("u_alice") == (own, expected_groups)
        finally:
            await store.close()

    async def store_usage_outside(live: list[tuple[SpaceState, int, int, bool, bool]]) -> Usage:
        return Usage(len(live), sum(s[1] for s in live if s[0] in quotas.COMPUTE_STATES), sum(s[2] for s in live))

    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(check(Path(directory)))


group_names = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)


@given(
    own=st.none() | st.integers(0, 50),
    groups=st.dictionaries(group_names, st.none() | st.integers(0, 50), max_size=4),
    used=st.integers(0, 60),
)
def test_a_quota_line_says_where_its_limit_comes_from_in_one_wording(
    own: int | None, groups: dict[str, int | None], used: int
) -> None:
    """quotas.report's lines, in the words `pair quota`, `pair-broker quota show` and the web pages
    share (pair.api.models.QuotaLine): the limit is the sum of the parts named, in order."""

    class Reader:  # the two store reads quotas.report makes
        async def quotas_of(self, user_id: str) -> tuple[Limits, list[tuple[str, Limits]]]:
            return Limits(compute=own), [(name, Limits(compute=limit)) for name, limit in groups.items()]

        async def usage(self, user_id: str) -> Usage:
            return Usage(spaces=0, compute=used, storage=0)

    ctx = type("Ctx", (), {"store": Reader()})()
    me = UserRecord("u_me", "me@example.com", False, NOW)
    report = asyncio.run(quotas.report(ctx, me))
    line = next(line for line in report.lines if line.resource == "compute")
    parts = [(f"{own} (own)", own)] if own is not None else []
    parts += [(f"{limit} (group {name})", limit) for name, limit in groups.items() if limit is not None]
    if parts:
        assert line.limit == sum(limit for _, limit in parts)
        assert line.summary() == f"compute units {used} of {line.limit} = {' + '.join(p for p, _ in parts)}"
    else:
        assert line.limit is None
        assert line.summary() == f"compute units {used} of unlimited (nobody sets it)"
    assert rows(report)[1] == ["compute units", str(used), line.limit_text(), line.origin()]
    assert line.summary() == f"compute units {line.usage()}"  # the admin page's cell: the line without its name
