"""`pair spaces proxy` says in one sentence how each stream ended (RFC 6455 close codes and the
broker's own 4xxx closes), never with a traceback, and re-pins the Space's host keys from the
broker's answer. The broker here is a stand-in WebSocket server that ends the stream as told."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from websockets.http11 import Request, Response
from websockets.sync.server import ServerConnection, serve

from pair.tunnel import ending

SPACE = "sp_abcdefghijkl"
KEY = "ssh-ed25519 " + base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes(range(32))).decode()
OLD = "ssh-ed25519 " + base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes(32)).decode()


@pytest.mark.parametrize(
    ("code", "reason", "sentence"),
    [
        (1000, "", None),
        (1005, "", None),
        (1001, "", "The broker is going away (shutting down or redeploying); connect again once it is back."),
        (1012, "", "The broker restarted; connect again in a few seconds."),
        (1012, "The broker is restarting; connect again.", "The broker is restarting; connect again."),
        (1011, "", "The broker hit an internal error and closed the connection."),
        (1006, "", "The connection to the broker was lost (network error)."),
        (None, "", "The connection to the broker was lost (network error)."),
        (4403, 'alice stopped sharing "demo" with you.', 'alice stopped sharing "demo" with you.'),
        (4502, "The connection to the container was lost.", "The connection to the container was lost."),
        (3000, "", "The broker closed the connection (WebSocket code 3000)."),
    ],
)
def test_every_ending_has_its_sentence(code: int | None, reason: str, sentence: str | None) -> None:
    assert ending(code, reason) == sentence


@contextmanager
def broker(code: int, reason: str, host_keys: str | None = None) -> Iterator[str]:
    """A WebSocket server that accepts the tunnel (with the host keys header, if given) and closes it."""

    def handler(ws: ServerConnection) -> None:
        ws.close(code, reason)

    def add_header(_ws: ServerConnection, _request: Request, response: Response) -> Response:
        if host_keys is not None:
            response.headers["X-Pair-Host-Keys"] = host_keys
        return response

    with serve(handler, "127.0.0.1", 0, process_response=add_header, compression=None) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.socket.getsockname()[1]}"
        finally:
            server.shutdown()
            thread.join(5)


def run_proxy(config: Path, url: str) -> subprocess.CompletedProcess[str]:
    config.mkdir(exist_ok=True)
    session = {"url": url, "email": "bob@example.com", "token": "pair_st_x", "expires_at": "2099-01-01T00:00:00Z"}
    (config / "session.json").write_text(json.dumps(session))
    with subprocess.Popen(
        [str(Path(sys.executable).parent / "pair"), "spaces", "proxy", SPACE],
        env={"PAIR_CONFIG_DIR": str(config), "PATH": "/usr/bin:/bin"},
        stdin=subprocess.PIPE,  # ssh's end stays open: the broker ends the stream first
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        code = proc.wait(timeout=30)
        assert proc.stdout is not None and proc.stderr is not None
        return subprocess.CompletedProcess(proc.args, code, proc.stdout.read(), proc.stderr.read())


@pytest.mark.parametrize(
    ("code", "reason", "said"),
    [
        (1012, "", "pair: The broker restarted; connect again in a few seconds."),
        (1001, "", "pair: The broker is going away"),
        (4403, "bob was kicked \x1b[31m", "pair: bob was kicked \\x1b[31m"),  # escaped on the way out
        (1000, "", None),
    ],
)
def test_the_proxy_says_it_on_sshs_stderr(tmp_path: Path, code: int, reason: str, said: str | None) -> None:
    with broker(code, reason) as url:
        result = run_proxy(tmp_path / "config", url)
    assert result.returncode == 0
    assert "Traceback" not in result.stderr
    if said is None:
        assert result.stderr == ""
    else:
        assert result.stderr.strip("\r\n").startswith(said), result.stderr


def test_the_proxy_re_pins_the_host_keys_the_broker_recorded(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "known_hosts").write_text(f"sp_other.pair {OLD}\n{SPACE}.pair {OLD}\n")
    with broker(1000, "", host_keys=KEY) as url:
        result = run_proxy(config, url)
    assert result.returncode == 0, result.stderr
    assert (config / "known_hosts").read_text() == f"sp_other.pair {OLD}\n{SPACE}.pair {KEY}\n"


def test_the_proxy_pins_nothing_from_a_hostile_header(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    before = f"{SPACE}.pair {OLD}\n"
    (config / "known_hosts").write_text(before)
    with broker(1000, "", host_keys=f"{KEY} @revoked * {OLD}") as url:
        result = run_proxy(config, url)
    assert result.returncode == 0
    assert "pair: warning: not pinning the host keys the broker sent" in result.stderr
    assert (config / "known_hosts").read_text() == before


def test_a_bad_argument_is_one_sentence(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "pair"), "spaces", "proxy", "sp_x;id"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("pair: error: usage: pair spaces proxy SPACE_ID\n")
