"""broker.metrics: names by Prometheus' conventions, each documented, and requests counted by
route template (bounded label values) through the in-process broker."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from broker import metrics
from tests.support.broker import InProcessBroker, in_process_broker

REPO = Path(__file__).resolve().parents[2]


def ours() -> list[tuple[str, str]]:
    """(name, type) of every metric family broker.metrics defines."""
    text = generate_latest(metrics.REGISTRY).decode()
    return [(f.name, f.type) for f in text_string_to_metric_families(text) if f.name.startswith("pair_broker_")]


def test_names_follow_prometheus_conventions() -> None:
    families = ours()
    assert len(families) == 7
    for name, kind in families:
        assert re.fullmatch(r"pair_broker_[a-z_]+", name), name
        if kind == "counter":
            assert not name.endswith("_total"), f"{name}: the parser strips _total from the family name"
        if "duration" in name:
            assert name.endswith("_seconds"), name
        if "bytes" in name:
            assert name.endswith("_bytes"), name


def test_operations_doc_lists_every_metric() -> None:
    doc = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    exposed = {f"{name}_total" if kind == "counter" else name for name, kind in ours()}
    assert sorted(name for name in exposed if name not in doc) == []


def count(route: str, method: str, status: str) -> float:
    return float(metrics.HTTP_REQUESTS.labels(route, method, status)._value.get())


def test_requests_are_counted_by_route_template_never_by_raw_path(broker: InProcessBroker) -> None:
    before = {
        "spaces": count("/api/v1/spaces", "GET", "401"),
        "space": count("/api/v1/spaces/{space_id}", "GET", "401"),
        "unmatched": count("unmatched", "GET", "404"),
        "odd": count("/api/v1/spaces", "other", "405"),
    }
    broker.http.get("/api/v1/spaces")
    for space_id in ("sp_aaaaaaaaaaaa", "sp_bbbbbbbbbbbb", "sp_cccccccccccc"):
        broker.http.get(f"/api/v1/spaces/{space_id}")
    broker.http.get("/wp-login.php")
    broker.http.request("BREW", "/api/v1/spaces")
    assert count("/api/v1/spaces", "GET", "401") == before["spaces"] + 1
    assert count("/api/v1/spaces/{space_id}", "GET", "401") == before["space"] + 3
    assert count("unmatched", "GET", "404") == before["unmatched"] + 1
    assert count("/api/v1/spaces", "other", "405") == before["odd"] + 1
    text = generate_latest(metrics.REGISTRY).decode()
    assert "sp_aaaaaaaaaaaa" not in text and "wp-login" not in text and "BREW" not in text


def test_requests_for_app_addresses_are_counted_as_the_app_proxys(tmp_path: Path) -> None:
    with in_process_broker(tmp_path / "data", apps_domain="*.apps.example.com") as broker:
        before = count("apps", "GET", "404"), count("unmatched", "GET", "404")
        for host in ("8080--demo--alice.apps.example.com", "3000--other--bob.apps.example.com"):
            assert broker.http.get("/anything", headers={"Host": host}).status_code == 404
        assert (count("apps", "GET", "404"), count("unmatched", "GET", "404")) == (before[0] + 2, before[1])
    text = generate_latest(metrics.REGISTRY).decode()
    assert "8080--demo" not in text and "/anything" not in text
