"""broker.metrics: names by Prometheus' conventions, each documented, and requests counted by
route template (bounded label values) through the in-process broker."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest
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
    """The exposed `pair_broker_http_requests_total` sample with these labels (0 when absent)."""
    wanted = {"route": route, "method": method, "status": status}
    text = generate_latest(metrics.REGISTRY).decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "pair_broker_http_requests_total" and sample.labels == wanted:
                return sample.value
    return 0.0


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


def samples(registry: CollectorRegistry, family: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for found in text_string_to_metric_families(text)
        if found.name == family
        for sample in found.samples
    }


# Edges themselves (a bucket's `le` is inclusive), values between and beyond them, and zero.
DURATIONS = st.one_of(st.sampled_from(metrics.DURATION_BUCKETS), st.floats(0, 20, allow_nan=False))


@given(st.lists(st.tuples(st.sampled_from(["/a", "/b/{id}"]), DURATIONS), max_size=40))
def test_request_durations_expose_what_prometheus_clients_histogram_would(timed: list[tuple[str, float]]) -> None:
    # The oracle: prometheus_client's own Histogram, fed the same observations.
    ours, oracle_registry = metrics.HttpRequests(), CollectorRegistry()
    oracle = Histogram(
        "pair_broker_http_request_duration_seconds",
        "oracle",
        ["route"],
        buckets=metrics.DURATION_BUCKETS,
        registry=oracle_registry,
    )
    for route, seconds in timed:
        ours.time(route, seconds)
        oracle.labels(route).observe(seconds)
    registry = CollectorRegistry()
    registry.register(ours)
    got = samples(registry, "pair_broker_http_request_duration_seconds")
    want = samples(oracle_registry, "pair_broker_http_request_duration_seconds")
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == (pytest.approx(value) if key[0].endswith("_sum") else value), key
