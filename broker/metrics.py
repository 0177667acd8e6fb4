"""The broker's metrics, in the Prometheus text format (prometheus_client), served on a listener
of their own (`--metrics-address`, `PAIR_BROKER_METRICS_ADDRESS`), never on the public port.

The metric objects are module-level, as prometheus_client intends: any room increments them
where the thing happens (`metrics.TOKENS_ISSUED.labels(kind="session").inc()`). Names follow
Prometheus' conventions (https://prometheus.io/docs/practices/naming/): the `pair_broker_`
prefix, base units (`_seconds`, `_bytes`), `_total` on counters (the library appends it).
Every label takes values from a fixed set, so the number of series stays bounded whatever
clients send: requests are counted by route *template* (`/api/v1/spaces/{space_id}`), never by
raw path, and by a method from the RFC 9110 list or `other`.

docs/operations.md lists every metric; a test keeps the two in step.
"""

from __future__ import annotations

import bisect
import itertools
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from pair.api.models import QuotaResource, StreamKind

if TYPE_CHECKING:
    from collections.abc import Iterator

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

# No `*_created` series beside every counter and histogram: twice the series for a timestamp
# Prometheus' text format does not use.
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated

# Our own registry, not the library's global one: /metrics says exactly what this module defines
# plus the process, Python and garbage collector metrics.
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # process_cpu_seconds_total, process_resident_memory_bytes, fds…
PlatformCollector(registry=REGISTRY)  # python_info
GCCollector(registry=REGISTRY)  # python_gc_*

CONNECTED_AGENTS = Gauge(
    "pair_broker_connected_agents",
    "Agents holding a control channel to this broker process.",
    registry=REGISTRY,
)
OPEN_STREAMS = Gauge(
    "pair_broker_open_streams",
    "Streams this process is relaying right now, by kind (ssh, terminal, port).",
    ["kind"],
    registry=REGISTRY,
)
TOKENS_ISSUED = Counter(
    "pair_broker_tokens_issued",
    "Secrets issued: space_token (authorize, renew), session (a login, a web sign-in), agent_credential (a bootstrap).",
    ["kind"],
    registry=REGISTRY,
)
QUOTA_REFUSALS = Counter(
    "pair_broker_quota_refusals",
    "Requests refused because a quota was reached, by the resource refused (spaces, compute, storage).",
    ["quota"],
    registry=REGISTRY,
)

STREAM_KINDS: tuple[str, ...] = get_args(StreamKind)  # ssh, terminal, port
TOKEN_KINDS = ("space_token", "session", "agent_credential")
QUOTA_RESOURCES: tuple[str, ...] = get_args(QuotaResource)  # spaces, compute, storage (broker.quotas)
for _kind in STREAM_KINDS:  # present at 0 from the start, so rate() and absent() behave
    OPEN_STREAMS.labels(kind=_kind)
for _kind in TOKEN_KINDS:
    TOKENS_ISSUED.labels(kind=_kind)
for _kind in QUOTA_RESOURCES:
    QUOTA_REFUSALS.labels(quota=_kind)

# RFC 9110 section 9 and PATCH (RFC 5789); anything else a client invents counts as `other`.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
UNMATCHED = "unmatched"  # no route took the request (a 404, a scanner's guess)


class Carrier(Protocol):
    """What RelayedBytes reads of a stream (broker.hub.Stream): its kind and its byte counts."""

    @property
    def kind(self) -> str: ...
    @property
    def bytes_in(self) -> int: ...  # person → container
    @property
    def bytes_out(self) -> int: ...  # container → person


class RelayedBytes(Collector):
    """`pair_broker_relayed_bytes_total` by kind and direction (to_space: from people to the
    container), derived when scraped: what ended streams carried plus what open ones have so far.
    The streams count their bytes for their log rows anyway, so the relay's per-frame path does
    no metrics work of its own."""

    def __init__(self) -> None:
        self.ended = {(kind, direction): 0 for kind in STREAM_KINDS for direction in ("to_space", "from_space")}
        self.open: set[Carrier] = set()

    def opened(self, stream: Carrier) -> None:
        self.open.add(stream)

    def closed(self, stream: Carrier) -> None:
        self.open.discard(stream)
        self.ended[(stream.kind, "to_space")] += stream.bytes_in
        self.ended[(stream.kind, "from_space")] += stream.bytes_out

    def collect(self) -> Iterator[Metric]:
        totals = dict(self.ended)
        for stream in list(self.open):
            totals[(stream.kind, "to_space")] += stream.bytes_in
            totals[(stream.kind, "from_space")] += stream.bytes_out
        family = CounterMetricFamily(
            "pair_broker_relayed_bytes",
            "Bytes relayed through streams, by kind and direction (to_space: from people to the container).",
            labels=["kind", "direction"],
        )
        for (kind, direction), value in totals.items():
            family.add_metric([kind, direction], value)
        yield family


RELAYED_BYTES = RelayedBytes()
REGISTRY.register(RELAYED_BYTES)


DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)  # seconds
_BUCKET_LABELS = [repr(le) for le in DURATION_BUCKETS]  # as prometheus_client writes `le`: 0.001, 1.0, 10.0
REQUESTS_HELP = (
    "HTTP requests answered and WebSocket handshakes (status 101 when accepted), by route template, method and status."
)
DURATION_HELP = "Time from a plain HTTP request's arrival to its last response byte, by route template."


class HttpRequests(Collector):
    """`pair_broker_http_requests_total` by route template, method and status, and
    `pair_broker_http_request_duration_seconds` by route template: kept as plain counts that the
    event loop bumps (well under a microsecond a request) and turned into metric families when
    scraped, from the metrics listener's thread. prometheus_client's own Counter and Histogram
    take a lock and check their labels on every call: several microseconds a request, a tenth
    of a whole `/api/v1/me`."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        # route -> count per bucket (the last one: above every bucket), then the sum of seconds
        self.durations: dict[str, list[float]] = {}

    def count(self, route: str, method: str, status: int) -> None:
        """One request or WebSocket handshake answered with `status`."""
        key = (route, method, status)
        self.requests[key] = self.requests.get(key, 0) + 1

    def time(self, route: str, seconds: float) -> None:
        """One plain HTTP request's time, from arrival to its last byte."""
        counts = self.durations.get(route)
        if counts is None:
            counts = self.durations[route] = [0.0] * (len(DURATION_BUCKETS) + 2)
        counts[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1  # the first bucket with le >= seconds
        counts[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        # dict() and list() copy in one step under the GIL: the loop may add a key meanwhile.
        requests = CounterMetricFamily("pair_broker_http_requests", REQUESTS_HELP, labels=["route", "method", "status"])
        for (route, method, status), value in sorted(dict(self.requests).items()):
            requests.add_metric([route, method, str(status)], value)
        yield requests
        durations = HistogramMetricFamily("pair_broker_http_request_duration_seconds", DURATION_HELP, labels=["route"])
        for route, counts in sorted(dict(self.durations).items()):
            counts = list(counts)
            cumulative = list(itertools.accumulate(counts[:-1]))
            buckets = [(label, cumulative[i]) for i, label in enumerate(_BUCKET_LABELS)]
            buckets.append(("+Inf", cumulative[-1]))
            durations.add_metric([route], buckets, counts[-1])
        yield durations


HTTP_REQUESTS = HttpRequests()
REGISTRY.register(HTTP_REQUESTS)


@dataclass(frozen=True)
class RouteName:
    """What goes in `scope["route"]` for requests no Starlette route answers, so they are counted
    under a name of their own rather than as `unmatched`."""

    path: str


APPS = RouteName("apps")  # every request for a host under the apps domain (broker.app_gate)


def route_template(scope: Scope) -> str:
    """The template of the route that took the request (`/api/v1/spaces/{space_id}`), from
    `scope["route"]` as Starlette's router (and `broker.http.ExactRoutes`) set it; `unmatched`
    when none did. Never the raw path: that would be one series per Space id."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class RequestMetrics:
    """ASGI middleware counting every request by route template, method and status, and timing
    plain HTTP ones (HttpRequests): about 1 µs a request (one wrapped `send`, two clock reads,
    two dict lookups)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            await self._websocket(scope, receive, send)
            return
        if kind != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets if the app raises before answering
        started = time.perf_counter()

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            route = route_template(scope)
            HTTP_REQUESTS.count(route, scope["method"] if scope["method"] in METHODS else "other", status)
            HTTP_REQUESTS.time(route, time.perf_counter() - started)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Counted once, at the handshake's answer: 101 when accepted, the denial response's
        status, or 403 for a close before accepting (ASGI's rule). Streams last long: their
        time is not a request duration."""
        counted = False

        def count(status: int) -> None:
            nonlocal counted
            if not counted:
                counted = True
                HTTP_REQUESTS.count(route_template(scope), "GET", status)

        async def watched(message: Message) -> None:
            kind = message["type"]
            if kind == "websocket.accept":
                count(101)
            elif kind == "websocket.http.response.start":
                count(message["status"])
            elif kind == "websocket.close":
                count(403)
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            count(500)


def serve(host: str, port: int) -> tuple[Any, int]:
    """Start the metrics listener on HOST:PORT (0: a free port) in a daemon thread:
    prometheus_client's own WSGI server, answering `GET /metrics` (any path, in fact) from
    REGISTRY. Returns (server, port); OSError if the address cannot be bound."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=host, registry=REGISTRY)
    return server, int(server.server_port)
