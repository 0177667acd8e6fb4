"""/metrics for real: a real broker with `PAIR_BROKER_METRICS_ADDRESS`, real people, a real
container (agent, sshd) and an SSH session through the relay; the listener is scraped over HTTP
and parsed with prometheus_client's own text parser, and the counters move with the traffic."""

from __future__ import annotations

import re
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.container.conftest import BROKER_ENV, World
from tests.support.container import eventually

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def broker_env() -> dict[str, str]:
    return {**BROKER_ENV, "PAIR_BROKER_METRICS_ADDRESS": "127.0.0.1:0"}


def metrics_url(world: World) -> str:
    found = re.search(r"pair broker metrics on (http://\S+/metrics)", world.broker.output.text())
    assert found, world.broker.output.text()
    return found.group(1)


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_move_with_the_traffic_and_stay_off_the_public_port(world: World) -> None:
    url = metrics_url(world)
    eventually(lambda: value(scrape(url), "pair_broker_connected_agents") == 1, "the agent is connected")
    before = scrape(url)
    # The fixture's traffic so far: three logins, one authorize, one bootstrap, the agent.
    assert value(before, "pair_broker_tokens_issued_total", kind="session") >= 3
    assert value(before, "pair_broker_tokens_issued_total", kind="space_token") == 1
    assert value(before, "pair_broker_tokens_issued_total", kind="agent_credential") == 1
    login = value(before, "pair_broker_http_requests_total", route="/api/v1/login", method="POST", status="200")
    assert login >= 3
    assert value(before, "pair_broker_http_requests_total", route="/api/v1/agent/connect", method="GET", status="101")
    assert value(before, "process_resident_memory_bytes") > 0
    assert value(before, "process_cpu_seconds_total") > 0

    # An SSH session through the relay: a stream open while it lasts, bytes both ways.
    with world.bob.session() as session:
        during = scrape(url)
        assert value(during, "pair_broker_open_streams", kind="ssh") == 1
        world.alice.ok("spaces", "kick", "demo", world.bob.email)
        assert session.wait(timeout=5) != 0
    ran = world.alice.run_in_space("head -c 300000 /dev/zero")
    assert ran.returncode == 0, ran.stderr
    world.alice.ok("spaces", "authorize", "--space", "demo")  # a renewed token
    # Requests by route template, never by raw path: two unknown Space ids, one series.
    for space_id in ("sp_aaaaaaaaaaaa", "sp_bbbbbbbbbbbb"):
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{world.broker.url}/api/v1/spaces/{space_id}", timeout=10)
    with pytest.raises(urllib.error.HTTPError) as no_metrics:  # the public port has no /metrics
        urllib.request.urlopen(f"{world.broker.url}/metrics", timeout=10)
    assert no_metrics.value.code == 404

    def ended() -> Samples | None:
        samples = scrape(url)
        return samples if value(samples, "pair_broker_open_streams", kind="ssh") == 0 else None

    after = eventually(ended, "the streams have ended")
    to_space = value(after, "pair_broker_relayed_bytes_total", kind="ssh", direction="to_space")
    from_space = value(after, "pair_broker_relayed_bytes_total", kind="ssh", direction="from_space")
    assert from_space - value(before, "pair_broker_relayed_bytes_total", kind="ssh", direction="from_space") > 300_000
    assert to_space > value(before, "pair_broker_relayed_bytes_total", kind="ssh", direction="to_space")
    assert value(after, "pair_broker_tokens_issued_total", kind="space_token") == 2
    requests = "pair_broker_http_requests_total"
    assert value(after, requests, route="/api/v1/spaces/{space_id}", method="GET", status="401") == 2
    assert value(after, requests, route="unmatched", method="GET", status="404") == 1
    assert value(after, requests, route="/api/v1/spaces/{space_id}/tunnel", method="GET", status="101") >= 2
    assert not any("sp_aaaaaaaaaaaa" in str(labels) for _, labels in after)
    spaces = value(after, "pair_broker_http_request_duration_seconds_count", route="/api/v1/spaces")
    assert spaces > value(before, "pair_broker_http_request_duration_seconds_count", route="/api/v1/spaces")
