"""psycopg's own log lines go to the broker's log at most once a minute each (broker.serving's
OncePerMinute): an outage otherwise repeats "error connecting" for every attempt."""

from __future__ import annotations

import logging
import uuid

from hypothesis import given
from hypothesis import strategies as st

from broker import serving


def record(name: str, msg: str) -> logging.LogRecord:
    return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, None, None)


@given(
    st.lists(
        st.tuples(st.sampled_from(["psycopg.pool", "psycopg"]), st.sampled_from(["a %s", "b"]), st.floats(0, 90)),
        max_size=60,
    )
)
def test_one_record_per_logger_and_template_a_minute_and_the_held_ones_counted(
    events: list[tuple[str, str, float]],
) -> None:
    now = [0.0]
    once = serving.OncePerMinute(60.0, clock=lambda: now[0])
    let: dict[tuple[str, str], float] = {}
    held: dict[tuple[str, str], int] = {}
    for name, msg, pause in events:
        now[0] += pause
        entry = record(name, msg)
        passed = once.filter(entry)
        key = (name, msg)
        expected = key not in let or now[0] - let[key] >= 60.0
        assert passed == expected
        if passed:
            told = held.pop(key, 0)
            assert entry.msg == (f"{msg} (and {told} more like it in the last minute)" if told else msg)
            let[key] = now[0]
        else:
            held[key] = held.get(key, 0) + 1


def test_serving_routes_psycopg_through_the_broker_log_once_a_minute() -> None:
    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("not called")

    loggers = [logging.getLogger(name) for name in (*serving.PSYCOPG_LOGGERS, "pair.broker")]
    before = [(lg.handlers[:], lg.filters[:], lg.propagate, lg.level) for lg in loggers]
    try:
        serving.config(app)
        for name in serving.PSYCOPG_LOGGERS:
            assert any(isinstance(f, serving.OncePerMinute) for f in logging.getLogger(name).filters)
        driver = logging.getLogger("psycopg")
        assert driver.handlers == logging.getLogger("pair.broker").handlers and not driver.propagate
        pool = logging.getLogger("psycopg.pool")
        fresh = f"error connecting in %r: %s ({uuid.uuid4()})"  # no earlier test's record counts
        passed = [pool.filter(record("psycopg.pool", fresh)) for _ in range(36)]
        assert passed.count(True) == 1
    finally:
        for lg, (handlers, filters, propagate, level) in zip(loggers, before, strict=True):
            lg.handlers, lg.filters, lg.propagate = handlers, filters, propagate
            lg.setLevel(level)
