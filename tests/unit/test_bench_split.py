"""bench/agents_load.py's `split`: how the 10,000 agents of bench/bench_replicas.py are shared
among the load generator's processes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.agents_load import split


@given(st.lists(st.integers(), max_size=300), st.integers(min_value=1, max_value=20))
def test_every_agent_lands_in_exactly_one_share_and_the_shares_are_even(items: list[int], parts: int) -> None:
    shares = split(items, parts)
    assert [x for share in shares for x in share] == items  # all of them, once, in order
    assert len(shares) == min(parts, len(items))
    assert all(shares)  # no process started with nothing to do
    if shares:
        sizes = [len(s) for s in shares]
        assert max(sizes) - min(sizes) <= 1
        assert sizes == sorted(sizes, reverse=True)  # the first shares take the remainder


def test_ten_thousand_over_four_processes() -> None:
    assert [len(s) for s in split(list(range(10_000)), 4)] == [2500] * 4
    assert [len(s) for s in split(list(range(10)), 4)] == [3, 3, 2, 2]


def test_fewer_than_one_share_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        split([1, 2], 0)
