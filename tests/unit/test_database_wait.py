"""`serve` waits for a PostgreSQL server that does not answer, and only for that
(broker.database_wait): the one place that decides, with the server's answer and the clock
played by the test. tests/integration/test_postgres.py starts a real server late."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.context import DatabaseUnavailable, DataDirError
from broker.database_wait import MAX_RETRY, open_waiting, retry_delays
from broker.store import StoreUnavailable

URL = "postgresql://pair:s3cret@db.internal:5433/pair"


def down(why: str = "the broker cannot connect to the database server (Connection refused)") -> DatabaseUnavailable:
    return DatabaseUnavailable(StoreUnavailable("postgresql://pair@db.internal:5433/pair", why, "Check it."))


class World:
    """The attempts' outcomes in turn, whether the server answers a ping at each, what was said
    and slept."""

    def __init__(self, outcomes: Sequence[BaseException | str], answers: list[bool]) -> None:
        self.outcomes = iter(outcomes)
        self.pings = iter(answers)
        self.said: list[str] = []
        self.slept: list[float] = []
        self.tries = 0

    async def attempt(self) -> str:
        self.tries += 1
        outcome = next(self.outcomes)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def answers(self, url: str) -> bool:
        assert url == URL
        return next(self.pings)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)

    def run(self, database: str = URL) -> str:
        return asyncio.run(
            open_waiting(database, self.attempt, answers=self.answers, sleep=self.sleep, say=self.said.append)
        )


def test_a_server_that_does_not_answer_is_waited_for_with_a_capped_backoff_and_said_once() -> None:
    world = World([down()] * 7 + ["open"], [False] * 7)
    assert world.run() == "open"
    assert world.slept == [1, 2, 4, 8, 10, 10, 10]
    assert world.said == [
        "waiting for PostgreSQL at db.internal:5433: the broker cannot connect to the database server"
        " (Connection refused); retrying in 1 s",
        "PostgreSQL at db.internal:5433 answers; starting.",
    ]
    assert not any("s3cret" in line for line in world.said)


def test_a_new_reason_is_said_again() -> None:
    starting = down("the database server is starting up")
    world = World([down(), starting, "open"], [False, False])
    world.run()
    assert [line.split(": ", 1)[1] for line in world.said[:2]] == [
        "the broker cannot connect to the database server (Connection refused); retrying in 1 s",
        "the database server is starting up; retrying in 2 s",
    ]


def test_a_server_that_answers_and_refuses_the_broker_is_an_error_at_once() -> None:
    refused = down("the broker cannot connect to the database server (password authentication failed)")
    world = World([refused, refused], [True])
    with pytest.raises(DatabaseUnavailable) as raised:
        world.run()
    assert raised.value is refused
    assert world.tries == 2  # once more after the ping: the server may have come up just then
    assert world.slept == [] and world.said == []


def test_a_server_that_comes_up_between_a_try_and_the_ping_is_used() -> None:
    world = World([down(), "open"], [True])
    assert world.run() == "open"
    assert world.slept == [] and world.said == []


def test_sqlite_and_other_errors_are_never_waited_for() -> None:
    world = World([down()], [])
    with pytest.raises(DatabaseUnavailable):
        world.run("/srv/pair/broker.db")
    other = World([DataDirError("The signing keys do not open.", "Give it the key.")], [])
    with pytest.raises(DataDirError):
        other.run()
    assert world.slept == other.slept == []


@given(st.floats(min_value=0.01, max_value=100), st.floats(min_value=0.01, max_value=100), st.integers(1, 40))
def test_retry_delays_start_at_the_first_double_and_stop_at_the_cap(first: float, cap: float, n: int) -> None:
    delays = list(itertools.islice(retry_delays(first, cap), n))
    assert delays[0] == min(first, cap)
    assert all(b == min(a * 2, cap) for a, b in itertools.pairwise(delays))
    assert max(delays) <= cap


def test_the_default_backoff_reaches_its_cap() -> None:
    assert list(itertools.islice(retry_delays(), 6)) == [1, 2, 4, 8, MAX_RETRY, MAX_RETRY]
