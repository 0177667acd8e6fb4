"""What a real `pair-broker serve` writes to its log: routine refusals are not errors, and no
secret ever reaches it, even with --access-log."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.support.broker import RealBroker, real_broker

pytestmark = pytest.mark.integration


def sign_in(broker: RealBroker) -> str:
    """The admin's session token, over the API."""
    key = broker.admin_key_file.read_text().strip()
    response = httpx.post(f"{broker.url}/api/v1/login", json={"email": broker.admin_email, "auth_key": key})
    assert response.status_code == 200, response.text
    return str(response.json()["session_token"])


def refused(url: str, token: str = "") -> tuple[int, str]:
    """Open a WebSocket that the broker refuses: its HTTP status and our error code."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with pytest.raises(InvalidStatus) as caught, connect(url, additional_headers=headers, open_timeout=10):
        pass
    response = caught.value.response
    return response.status_code, json.loads(response.body or b"{}").get("code", "")


def test_refused_websockets_are_answered_and_not_logged_as_errors(tmp_path: Path) -> None:
    with real_broker(tmp_path / "data") as broker:
        token = sign_in(broker)
        created = httpx.post(
            f"{broker.url}/api/v1/spaces", json={"name": "idle"}, headers={"Authorization": f"Bearer {token}"}
        )
        space_id = created.json()["space"]["id"]  # authorized, never bootstrapped: not running
        ws = broker.url.replace("http://", "ws://")
        assert refused(f"{ws}/api/v1/spaces/{space_id}/tunnel", token) == (409, "not_running")
        assert refused(f"{ws}/api/v1/spaces/sp_aaaaaaaaaaaa/tunnel", token) == (404, "not_found")
        assert refused(f"{ws}/api/v1/spaces/{space_id}/tunnel") == (401, "unauthenticated")
        assert refused(f"{ws}/api/v1/agent/connect", "pair_ac_unknown") == (401, "agent_unauthenticated")
        assert refused(f"{ws}/api/v1/agent/tunnels/tun_x") == (401, "agent_unauthenticated")
    # Stopped: every connection's handler has finished and whatever it logged is in the output.
    log = broker.output.text()
    assert log.count('"WebSocket /api/v1/') == 5, log
    assert "handshake" not in log
    assert "ERROR" not in log
    assert "Traceback" not in log


def test_the_access_log_never_holds_a_secret_and_head_spends_no_link(tmp_path: Path) -> None:
    with real_broker(tmp_path / "data", "--access-log") as broker:
        token = sign_in(broker)
        bearer = {"Authorization": f"Bearer {token}"}
        link = httpx.post(f"{broker.url}/api/v1/web-links", headers=bearer).json()["url"]
        secret = link.rsplit("/", 1)[1]
        made_up = link.replace(secret, "pair_wl_" + "x" * 43)

        # A link checker's HEAD neither spends the link nor tells a live one from a made-up one.
        live, fake = httpx.head(link), httpx.head(made_up)
        assert live.status_code == fake.status_code == 204
        assert live.content == fake.content == b""
        assert {k: v for k, v in live.headers.items() if k != "date"} == {
            k: v for k, v in fake.headers.items() if k != "date"
        }

        # Replayed from the log, the HEAD's line signs nobody in.
        logged = broker.output.wait_for(r'"HEAD (/web/link/\S+) HTTP/1.1" 204').group(1)
        assert secret not in logged
        replay = httpx.get(broker.url + logged, follow_redirects=False)
        assert replay.status_code == 400 and "pair_session" not in replay.cookies

        # The link itself still works once (the HEAD did not spend it), then never again.
        first = httpx.get(link, follow_redirects=False)
        assert first.status_code == 303 and "pair_session" in first.cookies
        assert httpx.get(link, follow_redirects=False).status_code == 400

        # A secret in a query string (where no client of ours puts one) is not logged either.
        httpx.get(f"{broker.url}/healthz", params={"session": token, "token": "eyJhbGciOi.eyJzdWIi.c2ln"})
        broker.output.wait_for(r'"GET /healthz\?\S+ HTTP/1.1" 200')
    log = broker.output.text()
    assert re.search(r'"GET /web/link/pair_wl_\[redacted\] HTTP/1.1" 303', log), log
    for leaked in (secret, token, token.removeprefix("pair_st_"), "eyJzdWIi"):
        assert leaked not in log
