"""Failures outside any one verb: a broker that answers oddly, a damaged config dir, bad usage.
Every one must end as `error: …` (and maybe `hint: …`) on stderr with a non-zero exit."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from pair import __version__
from pair.api import client as api_client
from tests.cli.helpers import assert_error, session_file
from tests.support.broker import TEST_URL
from tests.support.cli import Person


def answering(handler: Callable[[httpx.Request], httpx.Response]) -> Callable[[str], httpx.Client]:
    return lambda url: httpx.Client(transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    ("response", "message", "hint"),
    [
        (httpx.Response(500, text="<html>oops</html>"), "HTTP 500 without an error message", "pair broker"),
        (httpx.Response(502, text=""), "HTTP 502 without an error message", "pair broker"),
        (httpx.Response(401), "HTTP 401 without an error message", "pair broker"),
        (
            httpx.Response(503, json={"message": "Down for maintenance.", "detail": "Try at noon."}),
            "Down for maintenance.",
            "Try at noon.",
        ),
        (httpx.Response(200, json={"hello": "world"}), "does not understand", "versions compatible"),
        (httpx.Response(200, text="not json"), "does not understand", "pair broker"),
    ],
    ids=["500-html", "502-empty", "401-empty", "503-problem", "200-wrong-shape", "200-not-json"],
)
def test_odd_broker_answers_are_errors_not_tracebacks(
    people: dict[str, Person], monkeypatch: pytest.MonkeyPatch, response: httpx.Response, message: str, hint: str
) -> None:
    monkeypatch.setattr(api_client, "http_factory", answering(lambda request: response))
    for command in (("whoami",), ("spaces", "list"), ("keys", "list")):
        assert_error(people["bob"].pair(*command), message, hint=hint)


@pytest.mark.parametrize("content", ["{not json", "[]", '{"url": "x"}'])
def test_a_damaged_session_file(people: dict[str, Person], content: str) -> None:
    bob = people["bob"]
    session_file(bob).write_text(content)
    result = bob.pair("whoami")
    if content == "{not json":
        assert_error(result, f"Cannot read {session_file(bob)}", hint="log in again")
    else:  # readable, but no session in it
        assert_error(result, "You are not logged in.", hint="pair login")
        bob.login()  # logging in again repairs it
        assert bob.pair("whoami").out == f"bob@example.com on {TEST_URL}\n"


def test_login_replaces_an_unreadable_session_file(people: dict[str, Person]) -> None:
    bob = people["bob"]
    session_file(bob).write_text("{not json")
    key_file = bob.home / "auth.key"
    result = bob.pair("login", bob.email, "--key-file", str(key_file), "--url", TEST_URL)
    assert result.ok, result.err
    assert bob.pair("whoami").out == f"bob@example.com on {TEST_URL}\n"


def test_version(people: dict[str, Person]) -> None:
    result = people["bob"].pair("--version")
    assert result.ok
    assert result.out == f"pair {__version__}\n"


@pytest.mark.parametrize(
    "args",
    [("spaces", "delete", "--bogus"), ("nosuch",), ("spaces", "share", "--space", "x"), ("spaces", "list", "--bogus")],
    ids=" ".join,
)
def test_usage_errors_use_the_error_shape(people: dict[str, Person], args: tuple[str, ...]) -> None:
    result = people["bob"].pair(*args)
    assert result.code == 2
    assert_error(result, hint="--help")


# A module the command imports on its way in that delivers Ctrl-C to the process, as a person
# pressing it ~0.3 s after start does: typer for a `pair` command Typer runs (connect and list
# skip it), starlette for `pair-broker` (the KeyboardInterrupt ends the import there, as the real
# Ctrl-C would).
INTERRUPTING = """import os, signal
os.kill(os.getpid(), signal.SIGINT)
"""


@pytest.mark.parametrize(
    ("script", "argv", "module"),
    [
        ("pair", ["spaces", "delete", "demo"], "typer"),
        ("pair-broker", ["users", "list"], "starlette"),
    ],
)
def test_ctrl_c_while_still_importing_exits_130_without_a_traceback(
    tmp_path: Path, script: str, argv: list[str], module: str
) -> None:
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / f"{module}.py").write_text(INTERRUPTING)
    result = subprocess.run(
        [str(Path(sys.executable).parent / script), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(shim), "PAIR_CONFIG_DIR": str(tmp_path / "config")},
        check=False,
    )
    assert result.returncode == 130, result
    assert "Traceback" not in result.stderr and "KeyboardInterrupt" not in result.stderr, result.stderr
    assert result.stderr == "\nCancelled.\n"
