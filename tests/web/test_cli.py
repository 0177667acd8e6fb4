"""`pair web` against the in-process broker: open a browser when there is a display, else print
the one-time link (stdout holds only the link, so `$(pair web --print)` works)."""

from __future__ import annotations

import sys
import webbrowser

import pytest
from starlette.testclient import TestClient

from pair.cli import web
from tests.support.broker import TEST_URL, InProcessBroker
from tests.support.cli import Person


@pytest.fixture
def alice(people: dict[str, Person], monkeypatch: pytest.MonkeyPatch) -> Person:
    monkeypatch.setenv("PAIR_CONFIG_DIR", str(people["alice"].config_dir))
    return people["alice"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, False),
        ({"DISPLAY": ":0"}, True),
        ({"WAYLAND_DISPLAY": "wayland-0"}, True),
        ({"BROWSER": "/usr/bin/open-on-host"}, True),  # Codespaces' way of reaching the laptop's browser
    ],
)
def test_a_browser_opens_only_where_there_is_a_display(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: bool
) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert web.has_display() is expected


def test_print_gives_a_link_that_signs_in_once(
    broker: InProcessBroker, alice: Person, capsys: pytest.CaptureFixture[str]
) -> None:
    web.web(open_browser=False)
    out, err = capsys.readouterr()
    assert out.startswith(f"{TEST_URL}/web/link/pair_wl_") and out.count("\n") == 1
    assert err == "Open this link within 5 minutes to sign in (it works once):\n"
    with TestClient(broker.http.app, base_url=TEST_URL) as browser:
        assert alice.email in browser.get(out.strip().removeprefix(TEST_URL)).text
        assert browser.get(out.strip().removeprefix(TEST_URL)).status_code == 400


def test_open_hands_the_link_to_the_browser(
    broker: InProcessBroker, alice: Person, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    opened: list[str] = []

    def fake_open(url: str) -> bool:
        opened.append(url)
        return True

    monkeypatch.setattr(webbrowser, "open", fake_open)
    web.web(open_browser=True)
    out, err = capsys.readouterr()
    assert out == ""  # the link is not printed when a browser took it
    assert err == "Opened the Spaces page in your browser.\n"
    assert len(opened) == 1 and opened[0].startswith(f"{TEST_URL}/web/link/pair_wl_")

    monkeypatch.setattr(webbrowser, "open", lambda url: False)  # no browser after all: print it
    web.web(open_browser=True)
    out, err = capsys.readouterr()
    assert out.startswith(f"{TEST_URL}/web/link/pair_wl_")
    assert err.startswith("Could not start a browser here.\n")


def test_signed_out_it_says_how_to_log_in(broker: InProcessBroker, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pair.api.errors import PairError

    monkeypatch.setenv("PAIR_CONFIG_DIR", str(tmp_path / "nobody"))
    with pytest.raises(PairError, match="You are not logged in"):
        web.web(open_browser=False)
