"""The terminal's broker routes, fast, in process (fake clock): who gets the page and its
WebSocket, the Origin rule (one place decides: broker.web.auth.check_origin), the open-terminal
listing, and the Spaces page's ways in. The real thing end to end is test_terminal_live.py."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from broker import accounts
from broker.errors import Problem
from broker.hub import AgentLink
from broker.web import auth, views
from pair.api import endpoints as ep
from pair.api import models as m
from pair.api import terminal as tp
from pair.api.closecodes import transient
from tests.support.broker import TEST_URL, InProcessBroker
from tests.web.test_security import ALICE, BOB, CAROL, create_space, sign_in

NOW = datetime(2026, 11, 30, 5, 0, tzinfo=timezone.utc)


@pytest.fixture
def team(broker: InProcessBroker) -> dict[str, str]:
    return {email: broker.add_user(email) for email in (ALICE, BOB, CAROL)}


@pytest.fixture
def browser(broker: InProcessBroker) -> Iterator[TestClient]:
    with TestClient(broker.http.app, base_url=TEST_URL) as client:
        yield client


def info(terminal_id: str = "term_abcdefghijkl", by: str = ALICE) -> tp.TerminalInfo:
    person = tp.Person(email=BOB, role="viewer", since=NOW)
    return tp.TerminalInfo(
        id=terminal_id, started_by=by, started_at=NOW, cols=80, rows=24, drivers=[by], people=[person]
    )


# -- the Origin rule ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "public"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("https://pair.example.com", "https://pair.example.com:443/"),
        ("HTTPS://Pair.Example.com", "https://pair.example.com/broker"),
        ("http://[::1]:8000", "http://[::1]:8000"),
    ],
)
def test_the_brokers_own_origin_is_admitted(origin: str, public: str) -> None:
    auth.check_origin({"origin": origin}, public)


@pytest.mark.parametrize(
    "origin",
    [
        "",
        "null",
        "https://evil.example",
        "http://pair.example.com",  # another scheme
        "https://pair.example.com:8443",  # another port
        "https://pair.example.com.evil.example",
        "https://evil.example/https://pair.example.com",
        "https://pair.example.com:99999",
    ],
)
def test_any_other_origin_is_refused(origin: str) -> None:
    with pytest.raises(Problem) as refused:
        auth.check_origin({"origin": origin}, "https://pair.example.com")
    assert (refused.value.status, refused.value.code) == (403, "bad_origin")


@given(st.text(max_size=80))
def test_no_generated_origin_but_the_brokers_own_is_admitted(origin: str) -> None:
    public = "https://pair.example.com"
    try:
        auth.check_origin({"origin": origin}, public)
    except Problem:
        return
    assert auth.origin_of(origin) == public


# -- the page and its WebSocket -----------------------------------------------------------------


def test_the_page_is_for_signed_in_people_who_can_reach_a_running_space(
    broker: InProcessBroker, browser: TestClient, team: dict[str, str]
) -> None:
    space_id = create_space(broker, ALICE, "demo", BOB)
    path = ep.WEB_TERMINAL_PAGE.format(space_id=space_id)
    signed_out = browser.get(path, follow_redirects=False)
    assert (signed_out.status_code, signed_out.headers["location"]) == (303, "/signin")

    sign_in(browser, CAROL, team[CAROL])
    assert browser.get(path).status_code == 404  # not shared with carol: no such Space for her

    browser.cookies.clear()
    sign_in(browser, BOB, team[BOB])
    waiting = browser.get(path)  # shared, but no container yet
    assert waiting.status_code == 409
    assert "Content-Security-Policy" in waiting.headers

    broker.run(broker.ctx.store.heartbeat(space_id, "running", broker.ctx.now(), None))
    page = browser.get(path + "?join=term_abcdefghijkl&read_only=1")
    assert page.status_code == 200
    policy = page.headers["Content-Security-Policy"]
    nonce = policy.split("'nonce-")[1].split("'")[0]
    assert f'nonce="{nonce}"' in page.text and "script-src 'self';" in policy
    assert f'data-ws-url="{ep.WEB_TERMINAL.format(space_id=space_id)}"' in page.text
    assert 'data-terminal-id="term_abcdefghijkl"' in page.text and 'data-read-only="true"' in page.text
    # terminal.js reconnects by the CLI's rule, which the page carries (nothing of it in the script).
    attribute = re.search(r'data-reconnect="([^"]*)"', page.text)
    assert attribute is not None
    rule = json.loads(html.unescape(attribute.group(1)))
    assert rule == tp.reconnect_rule()
    assert all(transient(code) for code in rule["transient"]) and transient(rule["transient_range"][0])
    assert not any(transient(code) for code in (1000, 1008, 4403, 4404, 4422)) and "too_slow" in rule["rejoinable"]
    assert browser.get(path + "?join=term_<script>").status_code == 404


def test_the_websocket_wants_the_brokers_origin_and_a_web_session(
    broker: InProcessBroker, browser: TestClient, team: dict[str, str]
) -> None:
    space_id = create_space(broker, ALICE, "demo")
    path = ep.WEB_TERMINAL.format(space_id=space_id)
    sign_in(browser, ALICE, team[ALICE])
    for headers in ({"origin": "https://evil.example"}, {}):
        with pytest.raises(WebSocketDisconnect), browser.websocket_connect(path, headers=headers):
            pass
    browser.cookies.clear()
    with pytest.raises(WebSocketDisconnect), browser.websocket_connect(path, headers={"origin": TEST_URL}):
        pass  # no session cookie


# -- the listing and the ways in ------------------------------------------------------------------


def test_open_terminals_are_listed_for_the_owner_and_shares_only(
    broker: InProcessBroker, browser: TestClient, team: dict[str, str]
) -> None:
    space_id = create_space(broker, ALICE, "demo", BOB)
    link = AgentLink(space_id, None, "digest")  # type: ignore[arg-type]
    link.terminals = [info()]
    broker.ctx.hub.agents[space_id] = link
    path = ep.TERMINALS.path.format(space_id=space_id)
    for email, status in ((ALICE, 200), (BOB, 200), (CAROL, 404)):
        token, _, _ = broker.run(accounts.login(broker.ctx, email, team[email]))
        answer = browser.get(path, headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == status
        if status == 200:
            assert [t["id"] for t in answer.json()] == ["term_abcdefghijkl"]


def space(state: m.SpaceState) -> m.Space:
    return m.Space(
        id="sp_aaaaaaaaaaaa", name="demo", owner=ALICE, role="owner", state=state, created_at=NOW, updated_at=NOW
    )


def test_a_running_space_offers_a_terminal_and_each_open_one_to_join() -> None:
    demo = space("running")
    ways = views.ways_in(demo, [demo], {demo.id: ["demo.pair"]}, [info()])
    by_key = {w.key: w for w in ways}
    assert list(by_key) == ["connect", "ssh", "terminal", "join-term_abcdefghijkl"]
    assert by_key["terminal"].href == "/spaces/sp_aaaaaaaaaaaa/terminal"
    assert by_key["terminal"].command == "pair spaces terminal demo"
    join = by_key["join-term_abcdefghijkl"]
    assert join.href == "/spaces/sp_aaaaaaaaaaaa/terminal?join=term_abcdefghijkl"
    assert join.command == "pair spaces terminal demo --join term_abcdefghijkl"
    assert join.link_name.startswith(join.link) and ALICE in join.label and "1 attached" in join.label
    stopped = space("stopped")
    assert [w.key for w in views.ways_in(stopped, [stopped], {demo.id: ["demo.pair"]}, [info()])] == ["connect", "ssh"]
