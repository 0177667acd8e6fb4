"""The broker's Host and Origin checks. The second line against cross-origin posts (broker.web.security.check_origin): a
browser without Fetch Metadata still sends `Origin` on a POST, and one that is not the broker's
own is refused even with the right CSRF token. Against a real broker process."""

from __future__ import annotations

import http.client
import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tests.support.broker import RealBroker, real_broker
from tests.support.people import Person


def test_a_post_from_another_origin_is_refused_without_fetch_metadata(
    live_broker: RealBroker, team: dict[str, Person]
) -> None:
    alice = team["alice"]
    link = alice.ok("web", "--print").strip()
    with httpx.Client(base_url=live_broker.url, timeout=30) as client:
        assert client.get(link, follow_redirects=True).status_code == 200
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").text)
        assert token is not None
        for origin in ("https://evil.example", live_broker.url.replace("127.0.0.1", "localhost")):
            refused = client.post("/signout", data={"csrf_token": token.group(1)}, headers={"Origin": origin})
            assert refused.status_code == 403, (origin, refused.status_code)
            assert "security token" in refused.text
        assert client.get("/", follow_redirects=False).status_code == 200  # still signed in
        signed_out = client.post("/signout", data={"csrf_token": token.group(1)}, headers={"Origin": live_broker.url})
        assert signed_out.status_code == 303 and signed_out.headers["location"] == "/signin?signed_out"


def test_a_malformed_host_is_refused_not_served_broker_pages(tmp_path: Path) -> None:
    with real_broker(tmp_path / "data", env={"PAIR_BROKER_APPS_DOMAIN": "*.localhost"}) as broker:
        address = urlsplit(broker.url)
        for host in ("45763--demo--alice.localhost:", "45763--demo--alice.localhost:x", "a b.localhost"):
            connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=30)
            connection.putrequest("GET", "/signin", skip_host=True)
            connection.putheader("Host", host)
            connection.endheaders()
            response = connection.getresponse()
            body = response.read().decode()
            connection.close()
            assert response.status == 400, (host, response.status)
            assert "Auth key" not in body  # never the broker's sign-in page under an app host
