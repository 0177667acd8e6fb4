"""Access requests with a real broker (issue 16; seed 002): `pair login EMAIL --request` waits,
an admin approves (here `pair-broker requests approve`; tests/web/test_admin.py approves in
Chromium) and the waiting CLI is signed in with a Space made for it; a denial ends the wait with a
clear sentence; flooding is refused; the webhook reaches a real local HTTP server, and a webhook
that fails is logged once without failing the request."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from pair.api import endpoints as ep
from tests.support.broker import RealBroker, real_broker
from tests.support.container import free_port
from tests.support.processes import Output, clean_env, executable

pytestmark = pytest.mark.integration


@contextmanager
def waiting_login(
    broker: RealBroker, home: Path, email: str, *extra: str
) -> Iterator[tuple[subprocess.Popen[str], Output]]:
    """`pair login EMAIL --request` running, once it said it waits."""
    env = clean_env(PAIR_CONFIG_DIR=str(home / "config"), HOME=str(home))
    proc = subprocess.Popen(
        [executable("pair"), "login", email, "--request", "--url", broker.url, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    output = Output(proc)
    try:
        output.wait_for(r"waiting for an admin to approve it")
        yield proc, output
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        output.finish()
        assert proc.stdout is not None
        proc.stdout.close()


def pair(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = clean_env(PAIR_CONFIG_DIR=str(home / "config"), HOME=str(home))
    return subprocess.run([executable("pair"), *args], capture_output=True, text=True, env=env, timeout=60, check=False)


def admin(broker: RealBroker, *args: str) -> str:
    result = broker.admin(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_an_approved_request_signs_the_waiting_cli_in_with_a_space(live_broker: RealBroker, tmp_path: Path) -> None:
    home = tmp_path / "new"
    with waiting_login(live_broker, home, "New@Example.com", "--message", "I am new here") as (proc, output):
        listed = admin(live_broker, "requests", "list")
        assert "new@example.com  I am new here" in listed
        assert admin(live_broker, "requests", "approve", "new@example.com").startswith("Approved req_")
        assert proc.wait(timeout=10) == 0
        output.finish()
        assert "Logged in to " in output.text() and "as new@example.com." in output.text()
    spaces = json.loads(pair(home, "spaces", "list", "--json").stdout)
    assert [(s["role"], s["state"], s["owner"]) for s in spaces] == [("owner", "created", "new@example.com")]
    assert f'Your Space "{spaces[0]["name"]}" is ready' in output.text()
    assert not (home / "config" / "access-request.json").exists()
    assert "No pending access requests." in live_broker.admin("requests", "list").stderr
    again = pair(home, "login", "new@example.com", "--request", "--url", live_broker.url)
    assert again.returncode == 1
    assert "error: new@example.com has an account on this broker already." in again.stderr


def test_a_denied_request_ends_the_wait_with_a_clear_message(live_broker: RealBroker, tmp_path: Path) -> None:
    with waiting_login(live_broker, tmp_path / "eve", "eve@example.com") as (proc, output):
        admin(live_broker, "requests", "deny", "eve@example.com")
        assert proc.wait(timeout=10) == 1
        output.finish()
    assert "error: An admin denied the access request for eve@example.com." in output.text()
    assert "Traceback" not in output.text()
    assert not (tmp_path / "eve" / "config" / "session.json").exists()


def test_flooding_requests_is_bounded(live_broker: RealBroker) -> None:
    path = ep.ACCESS_REQUEST.path
    with httpx.Client(base_url=live_broker.url) as http:
        first = http.post(path, json={"email": "flood@example.com"})
        assert first.status_code == 200
        assert http.post(path, json={"email": "flood@example.com"}).json()["code"] == "pending"
        for i in range(9):  # ten from this address in all (the refused one was not filed)
            assert http.post(path, json={"email": f"f{i}@example.com"}).status_code == 200
        refused = http.post(path, json={"email": "more@example.com"})
        assert refused.status_code == 429
        assert refused.json()["message"] == "Too many access requests from your address."
        # past the bound, an email with an account is answered alike: no listing of accounts
        assert http.post(path, json={"email": "admin@example.com"}).status_code == 429
        device = first.json()["device_code"]
        polled = http.post(ep.ACCESS_REQUEST_TOKEN.path, json={"device_code": device}).json()
        assert polled["status"] in ("authorization_pending", "slow_down")
        assert http.post(ep.ACCESS_REQUEST_TOKEN.path, json={"device_code": device}).json()["status"] == "slow_down"


@pytest.mark.parametrize("trusted", [True, False], ids=["proxy-trusted", "proxy-not-trusted"])
def test_the_per_address_bound_counts_forwarded_addresses_only_from_a_trusted_proxy(
    tmp_path: Path, trusted: bool
) -> None:
    """Behind a load balancer every request comes from its address: with it trusted
    (--forwarded-allow-ips) the bound counts each X-Forwarded-For client apart; from an address
    not trusted the header is ignored and the peer's address counts."""
    proxy = "127.0.0.1" if trusted else "192.0.2.1"  # the tests' requests come from 127.0.0.1
    with (
        real_broker(tmp_path / "data", "--forwarded-allow-ips", proxy) as broker,
        httpx.Client(base_url=broker.url) as http,
    ):
        path = ep.ACCESS_REQUEST.path

        def ask(email: str, client: str) -> int:
            return http.post(path, json={"email": email}, headers={"X-Forwarded-For": client}).status_code

        for i in range(10):
            assert ask(f"a{i}@example.com", "203.0.113.1") == 200
        assert ask("one-more@example.com", "203.0.113.1") == 429
        assert ask("elsewhere@example.com", "203.0.113.2") == (200 if trusted else 429)


class Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append({"type": self.headers["Content-Type"], "body": json.loads(body)})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_the_webhook_tells_a_real_http_server_and_a_failing_one_is_logged_once(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{server.server_address[1]}/hooks/pair"
    try:
        with real_broker(tmp_path / "ok", env={"PAIR_BROKER_REQUEST_WEBHOOK": hook}) as broker:
            with httpx.Client(base_url=broker.url) as http:
                answer = http.post(ep.ACCESS_REQUEST.path, json={"email": "hook@example.com", "message": "hi"})
            assert answer.status_code == 200
            for _ in range(100):
                if Hook.received:
                    break
                threading.Event().wait(0.05)
            [call] = Hook.received
            assert call["type"] == "application/json"
            assert call["body"]["event"] == "access_request.created"
            assert (call["body"]["email"], call["body"]["message"]) == ("hook@example.com", "hi")
            assert call["body"]["id"] == answer.json()["request_id"]
            assert "device_code" not in json.dumps(call["body"])
    finally:
        server.shutdown()
        server.server_close()

    dead = f"http://127.0.0.1:{free_port()}/nobody"
    with real_broker(tmp_path / "dead", env={"PAIR_BROKER_REQUEST_WEBHOOK": dead}) as broker:
        with httpx.Client(base_url=broker.url) as http:
            answer = http.post(ep.ACCESS_REQUEST.path, json={"email": "lost@example.com"})
        assert answer.status_code == 200
        broker.output.wait_for(r"The access request webhook failed for req_")
    assert broker.output.text().count("webhook failed") == 1
    assert "Traceback" not in broker.output.text()
