"""When `pair spaces terminal` joins its terminal again (pair.cli.terminal_stream): which closes
are final (pair.api.closecodes.transient, the one rule), the backoff schedule, and the reconnect
loop's ends: a refusal for good, giving up, Ctrl-C. The live version, through a real broker
restart, is tests/container/test_terminal_reconnect.py."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker import events, streams
from pair.api import terminal as tp
from pair.api.client import Client
from pair.api.closecodes import BROKER_RESTARTING, CloseCode, for_status, transient
from pair.cli import terminal_stream as ts
from pair.cli.terminal import _rejoin_url

FINAL = [
    CloseCode.NORMAL,
    CloseCode.BAD_DATA,
    CloseCode.POLICY,
    CloseCode.TOO_BIG,
    CloseCode.REPLACED,
    CloseCode.CREDENTIAL_DEAD,
    CloseCode.REVOKED,
    CloseCode.WRONG_CONTAINER,
    CloseCode.INVALID,
]


# -- the close-code decision --------------------------------------------------------------------


@pytest.mark.parametrize("code", FINAL, ids=lambda c: c.name)
def test_refusals_revocations_and_normal_ends_are_final(code: CloseCode) -> None:
    assert not transient(code)
    assert isinstance(ts.closing(code, "Your access to this Space ended."), str)


@pytest.mark.parametrize(
    "code",
    [*BROKER_RESTARTING, CloseCode.ABNORMAL, CloseCode.INTERNAL_ERROR, CloseCode.CONTAINER_LOST, CloseCode.UNAVAILABLE],
    ids=lambda c: c.name,
)
def test_a_restart_a_dropped_connection_or_a_lost_container_is_joined_again(code: CloseCode) -> None:
    assert transient(code)
    assert ts.closing(code, "") is ts.DROPPED


def test_the_broker_closes_with_a_transient_code_on_shutdown_and_a_final_one_on_revocation() -> None:
    """Where the broker decides its codes: shutdown (streams.close_all) sends SERVICE_RESTART; the
    one way to end streams for access reasons (events.end_streams: unshare, kick, delete, down)
    sends REVOKED by default."""
    assert streams.SHUTDOWN_REASON and transient(CloseCode.SERVICE_RESTART)
    assert not transient(events.EndStreams(space_id="sp_x", reason="gone").code)


@given(st.integers(min_value=400, max_value=599))
def test_a_refused_upgrade_is_retried_only_for_a_server_side_status(status: int) -> None:
    assert transient(for_status(status)) == (status >= 500)


@given(st.integers(min_value=0, max_value=65535))
def test_only_the_servers_trouble_is_transient(code: int) -> None:
    """Unknown codes are final; pair's 45xx (a 5xx HTTP status) are not; 44xx never are."""
    if 4400 <= code <= 4499 or code == CloseCode.NORMAL or code < 1000 or 2000 <= code < 4000:
        assert not transient(code)
    if 4500 <= code <= 4599:
        assert transient(code)


def test_a_final_close_is_said_with_the_brokers_reason_or_the_codes_sentence() -> None:
    assert ts.closing(CloseCode.REVOKED, "bob's access ended.") == "bob's access ended."
    assert ts.closing(CloseCode.REVOKED, "") == "Your access to the Space ended."
    assert ts.closing(CloseCode.NORMAL, "") == ts.LOST


def test_only_a_reader_too_slow_may_join_again_after_closed() -> None:
    assert set(tp.REJOINABLE).issubset(tp.CLOSE_CODES)
    assert {"revoked", "ended", "idle", "not_found", "agent_stopping"}.isdisjoint(tp.REJOINABLE)


# -- the backoff schedule ---------------------------------------------------------------------------


def test_the_backoff_doubles_from_half_a_second_to_ten() -> None:
    assert [ts.backoff(n, 1.0) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert [ts.backoff(n, 0.0) for n in range(1, 4)] == [0.25, 0.5, 1.0]


@given(st.integers(min_value=1, max_value=10_000), st.floats(min_value=0.0, max_value=1.0, exclude_max=True))
def test_the_jitter_keeps_each_wait_within_half_and_all_of_its_step(attempt: int, jitter: float) -> None:
    step = min(tp.BACKOFF_MAX, tp.BACKOFF_FIRST * 2.0 ** min(attempt - 1, 64))
    assert step / 2 <= ts.backoff(attempt, jitter) <= step
    assert ts.backoff(attempt, jitter) <= ts.backoff(attempt + 1, jitter)


# -- the rejoin URL ---------------------------------------------------------------------------------


@pytest.mark.parametrize("read_only", [True, False])
def test_the_rejoin_joins_by_id_as_the_person_joined_at_the_windows_size(read_only: bool) -> None:
    url = _rejoin_url(Client("https://pair.example.com"), "sp_abc", read_only, "term_abcdefghijkl", (120, 40))
    parts = urlsplit(url)
    assert (parts.scheme, parts.path) == ("wss", "/api/v1/spaces/sp_abc/terminal")
    assert parse_qs(parts.query) == {
        "join": ["term_abcdefghijkl"],
        "read_only": [str(read_only).lower()],
        "cols": ["120"],
        "rows": ["40"],
    }


# -- the reconnect loop -----------------------------------------------------------------------------


class Closed:
    async def close(self) -> None:
        pass


@pytest.fixture
def pipes() -> Iterator[tuple[int, int]]:
    """A stdin the test writes to: (its read end, its write end)."""
    read, write = os.pipe()
    os.set_blocking(read, False)
    try:
        yield read, write
    finally:
        os.close(read)
        os.close(write)


def stream(stdin: int, raw: bool) -> ts.TerminalStream:
    """A stream whose stdout is not a terminal (stdin's pipe: nothing is written to it here)."""
    made = ts.TerminalStream(Closed(), "demo", stdin, stdin, raw)  # type: ignore[arg-type]
    made.terminal_id = "term_abcdefghijkl"
    return made


def opener(monkeypatch: pytest.MonkeyPatch, *outcomes: BaseException | Any) -> list[str]:
    """open_stream answering each attempt with the next of `outcomes` (raised if an exception); the URLs asked."""
    asked: list[str] = []
    answers = iter(outcomes)

    async def open_stream(url: str, _headers: dict[str, str]) -> Any:
        asked.append(url)
        answer = next(answers)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    monkeypatch.setattr(ts, "open_stream", open_stream)
    monkeypatch.setattr(ts, "backoff", lambda _attempt, _jitter: 0.01)
    return asked


def rejoin(made: ts.TerminalStream, clock: Any = None) -> int | None:
    async def attempt() -> int | None:
        loop = asyncio.get_running_loop()
        return await made.rejoin(lambda tid, _size: f"ws://b/{tid}", {}, clock or loop.time)

    return asyncio.run(asyncio.wait_for(attempt(), 10))


def test_an_unreachable_or_busy_broker_is_tried_again_until_it_answers(
    monkeypatch: pytest.MonkeyPatch, pipes: tuple[int, int], capsys: pytest.CaptureFixture[str]
) -> None:
    new = Closed()
    busy = ts.Refused("The container has not reconnected yet.", "", 503)
    asked = opener(monkeypatch, ts.Unreachable("Cannot reach the broker.", ""), busy, new)
    made = stream(pipes[0], raw=False)
    assert rejoin(made) is None
    assert made.rejoining
    assert made.ws is cast(Any, new)
    assert asked == ["ws://b/term_abcdefghijkl"] * 3
    assert capsys.readouterr().err.count("pair: Disconnected; reconnecting in 1 s\u2026 (Ctrl-C to stop)\n") == 3


def test_a_refusal_for_good_ends_it_in_one_sentence_without_retrying(
    monkeypatch: pytest.MonkeyPatch, pipes: tuple[int, int], capsys: pytest.CaptureFixture[str]
) -> None:
    gone = ts.Refused("The Space sp_abc was not found.", "List the Spaces you can see.", 404)
    asked = opener(monkeypatch, gone, Closed())
    assert rejoin(stream(pipes[0], raw=False)) == 1
    assert len(asked) == 1
    assert capsys.readouterr().err.endswith(
        "pair: The terminal cannot be joined again: The Space sp_abc was not found.\n"
    )


def test_it_gives_up_after_two_minutes_without_a_reconnect(
    monkeypatch: pytest.MonkeyPatch, pipes: tuple[int, int], capsys: pytest.CaptureFixture[str]
) -> None:
    asked = opener(monkeypatch, *[ts.Unreachable("Cannot reach the broker.", "")] * 10)
    ticks = itertools.count(0.0, 50.0)  # each look at the clock: 50 s later
    assert rejoin(stream(pipes[0], raw=False), clock=lambda: next(ticks)) == 1
    assert len(asked) == 2  # at 50 s and 100 s; at 150 s it is past the 120 s bound
    err = capsys.readouterr().err
    assert err.endswith(
        "pair: Could not reconnect for 2 minutes; the shell may still run in the Space "
        "(rejoin it with `pair spaces terminal demo --join term_abcdefghijkl`).\n"
    )


def test_ctrl_c_while_disconnected_stops_without_typing_into_the_shell(
    monkeypatch: pytest.MonkeyPatch, pipes: tuple[int, int], capsys: pytest.CaptureFixture[str]
) -> None:
    opener(monkeypatch, *[ts.Unreachable("Cannot reach the broker.", "")] * 1000)
    os.write(pipes[1], b"ls\x03")
    assert rejoin(stream(pipes[0], raw=True)) == 130
    assert capsys.readouterr().err == (
        "\r\npair: Disconnected; reconnecting in 1 s\u2026 (Ctrl-C to stop)"
        "\r\npair: stopped by Ctrl-C; the shell goes on in the Space "
        "(rejoin it with `pair spaces terminal demo --join term_abcdefghijkl`).\r\n"
    )


def hello(role: tp.Role) -> tp.Hello:
    return tp.Hello(
        terminal_id="term_abcdefghijkl",
        email="bob@example.com",
        role=role,
        started_by="alice@example.com",
        started_at=datetime(2026, 11, 30, tzinfo=timezone.utc),
        cols=80,
        rows=24,
    )


@pytest.mark.parametrize(
    ("before", "after", "said"),
    [
        ("viewer", "viewer", "pair: Reconnected.\n"),
        ("driver", "viewer", "pair: Reconnected. You watch now.\n"),
        ("viewer", "driver", "pair: Reconnected. You may type now.\n"),
    ],
)
def test_a_reconnect_says_so_and_whether_the_role_changed_meanwhile(
    pipes: tuple[int, int], capsys: pytest.CaptureFixture[str], before: tp.Role, after: tp.Role, said: str
) -> None:
    async def scenario() -> ts.TerminalStream:
        made = stream(pipes[0], raw=False)
        made.role, made.rejoining = before, True
        made._hello(hello(after))
        return made

    made = asyncio.run(scenario())
    assert (made.role, made.rejoining) == (after, False)
    assert capsys.readouterr().err == said


def test_a_stream_that_opens_and_drops_before_the_agent_answers_is_no_reconnect(
    monkeypatch: pytest.MonkeyPatch, pipes: tuple[int, int], capsys: pytest.CaptureFixture[str]
) -> None:
    """The bound and the backoff run on until a `hello`: a broker that accepts and drops every
    stream (its container lost) is given up on after GIVE_UP too."""
    opener(monkeypatch, *[Closed()] * 10)
    ticks = itertools.count(0.0, 50.0)

    async def scenario() -> list[int | None]:
        made = stream(pipes[0], raw=False)
        # the deadline at 0 + 120 s; opened at 50 s and at 100 s, each dropped before any hello;
        # at 150 s it is past the bound, counted from the first drop
        return [await made.rejoin(lambda tid, _size: tid, {}, lambda: next(ticks)) for _ in range(3)]

    assert asyncio.run(asyncio.wait_for(scenario(), 10)) == [None, None, 1]
    assert "pair: Could not reconnect for 2 minutes" in capsys.readouterr().err
