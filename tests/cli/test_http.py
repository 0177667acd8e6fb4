"""The broker's JSON endpoints as plain ASGI apps (broker/http.py): every failure still answers
`{"message", "detail", "code"}` with the right status, on the dict-routed hot paths and on the
routes with path parameters alike."""

from __future__ import annotations

import logging
import re
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route, WebSocketRoute

from broker import relay, spaces
from broker.http import JsonEndpoint
from pair.api import endpoints as ep
from tests.cli.helpers import session_token
from tests.support.broker import InProcessBroker
from tests.support.cli import Person


def error_of(response: Any, status: int, code: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"message", "detail", "code"}, body
    assert body["code"] == code
    assert body["message"].endswith("."), body
    return dict(body)


def bearer(person: Person) -> dict[str, str]:
    return {"Authorization": f"Bearer {session_token(person)}"}


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/v1/spaces"), ("GET", "/api/v1/me"), ("GET", "/api/v1/spaces/sp_aaaaaaaaaaaa")],
)
@pytest.mark.parametrize("authorization", [None, "Bearer pair_st_not-a-session", "Basic YWxpY2U6eA=="])
def test_no_valid_session_is_401_with_a_bearer_challenge(
    broker: InProcessBroker, method: str, path: str, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = broker.http.request(method, path, headers=headers)
    error_of(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"] == "Bearer"


def test_agent_endpoint_refuses_a_wrong_credential(broker: InProcessBroker) -> None:
    response = broker.http.post(
        "/api/v1/agent/heartbeat",
        headers={"Authorization": "Bearer pair_ac_unknown"},
        content=b'{"instance_id":"i","state":"running"}',
    )
    error_of(response, 401, "agent_unauthenticated")


def test_unknown_method_on_a_known_path_is_405(broker: InProcessBroker, people: dict[str, Person]) -> None:
    response = broker.http.request("PATCH", "/api/v1/spaces", headers=bearer(people["alice"]))
    body = error_of(response, 405, "method_not_allowed")
    assert "PATCH" in body["message"]


def test_unknown_path_is_404(broker: InProcessBroker) -> None:
    body = error_of(broker.http.get("/api/v1/nothing-here"), 404, "not_found")
    assert "/api/v1/nothing-here" in body["message"]


def test_body_that_is_not_json_is_400(broker: InProcessBroker, people: dict[str, Person]) -> None:
    response = broker.http.post("/api/v1/spaces", headers=bearer(people["alice"]), content=b"{not json")
    error_of(response, 400, "bad_json")


def test_body_of_the_wrong_shape_is_422_naming_the_field(broker: InProcessBroker, people: dict[str, Person]) -> None:
    response = broker.http.post("/api/v1/spaces", headers=bearer(people["alice"]), content=b'{"ttl_seconds":"soon"}')
    body = error_of(response, 422, "invalid")
    assert "ttl_seconds" in body["detail"]


def test_body_over_64_kib_is_413_and_nothing_is_created(broker: InProcessBroker, people: dict[str, Person]) -> None:
    huge = b'{"name":"x","share_with":[' + b'"a@example.com",' * 5000 + b'"b@example.com"]}'
    assert len(huge) > 64 * 1024
    response = broker.http.post("/api/v1/spaces", headers=bearer(people["alice"]), content=huge)
    error_of(response, 413, "too_large")
    listed = broker.http.get("/api/v1/spaces", headers=bearer(people["alice"]))
    assert listed.status_code == 200
    assert listed.json() == []


def test_a_bug_is_a_500_in_the_error_shape_and_a_traceback_in_the_log(
    broker: InProcessBroker,
    people: dict[str, Person],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(*args: object) -> None:
        raise RuntimeError("a bug in the Space list")

    monkeypatch.setattr(spaces, "visible", broken)
    with caplog.at_level(logging.ERROR, logger="pair.broker"):
        response = broker.http.get("/api/v1/spaces", headers=bearer(people["alice"]))

    body = error_of(response, 500, "internal")
    assert "a bug in the Space list" not in response.text  # internals stay in the log
    assert body["detail"]
    assert any(r.exc_info and "a bug in the Space list" in str(r.exc_info[1]) for r in caplog.records)


def test_success_answers_json_with_its_length(broker: InProcessBroker, people: dict[str, Person]) -> None:
    response = broker.http.get("/api/v1/me", headers=bearer(people["bob"]))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    assert response.json()["email"] == "bob@example.com"


def app_routes(broker: InProcessBroker) -> list[BaseRoute]:
    app = broker.http.app
    assert isinstance(app, Starlette)
    return app.routes


def test_every_endpoint_in_the_table_is_bound_once(broker: InProcessBroker) -> None:
    """The table (pair.api.endpoints) is what the client calls and /openapi.json describes: the
    app answers each entry with exactly one handler, and nothing the table does not name."""
    bound = Counter(
        (method, route.path)
        for route in app_routes(broker)
        if isinstance(route, Route) and isinstance(route.app, JsonEndpoint)
        for method in (route.methods or set()) - {"HEAD"}
    )
    assert bound == Counter((e.method, e.path) for e in ep.ALL)


def test_every_websocket_route_is_in_the_table_and_in_openapi(broker: InProcessBroker) -> None:
    """Every WebSocket route but the replicas' internal ones (under /internal/, never listed)."""
    internal = sorted(route.path for route in relay.INTERNAL_ROUTES)
    assert internal and all(path.startswith("/internal/") for path in internal)
    routed = sorted(
        route.path for route in app_routes(broker) if isinstance(route, WebSocketRoute) and route.path not in internal
    )
    assert routed == sorted(w.path for w in ep.WEBSOCKETS)
    assert [r for r in app_routes(broker) if isinstance(r, WebSocketRoute) and r.path in internal]
    documented = broker.http.get("/openapi.json").json()["x-websockets"]
    assert sorted(documented) == routed
    assert all(entry["summary"] and entry["auth"] in ("session", "agent", "web") for entry in documented.values())


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")
TCHAR = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # RFC 9110 5.6.2


def http_paths(broker: InProcessBroker) -> list[str]:
    """A concrete path for every HTTP route of the app (path parameters filled in), and a static file."""
    paths = [re.sub(r"{(\w+)(:\w+)?}", "x", route.path) for route in app_routes(broker) if isinstance(route, Route)]
    return [*sorted(set(paths)), "/web/static/app.js"]


def test_every_405_names_exactly_the_methods_that_are_not_405(broker: InProcessBroker) -> None:
    """RFC 9110 15.5.6: a 405 carries Allow, and Allow lists what the resource answers, on every
    route: the dict-routed JSON endpoints, those with path parameters, the web pages, static files."""
    for path in http_paths(broker):
        answered = {method: broker.http.request(method, path).status_code for method in METHODS}
        allowed = {method for method, status in answered.items() if status != 405}
        assert "TRACE" not in allowed, path
        response = broker.http.request("TRACE", path)
        body = error_of(response, 405, "method_not_allowed")
        assert set(response.headers["allow"].split(", ")) == allowed, (path, answered)
        assert body["message"] == f"TRACE is not allowed on {path}."


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.text(TCHAR, min_size=1, max_size=12).filter(lambda m: m.upper() not in METHODS))
def test_any_unknown_method_is_405_with_allow(broker: InProcessBroker, method: str) -> None:
    for path in ("/api/v1/spaces", "/api/v1/spaces/sp_aaaaaaaaaaaa", "/healthz", "/signin"):
        response = broker.http.request(method, path)
        error_of(response, 405, "method_not_allowed")
        assert "GET" in response.headers["allow"].split(", ")


@pytest.mark.parametrize(
    ("ttl", "status"), [("3600.0", 200), ("3.6e3", 200), ("3600.5", 422), ('"3600"', 422), ("true", 422)]
)
def test_a_whole_number_written_with_a_point_is_an_integer(
    broker: InProcessBroker, people: dict[str, Person], ttl: str, status: int
) -> None:
    """JSON Schema (and so /openapi.json's "integer") counts 3600.0 as an integer; the broker agrees."""
    response = broker.http.post(
        "/api/v1/spaces",
        content=f'{{"name": "whole", "ttl_seconds": {ttl}}}'.encode(),
        headers={**bearer(people["alice"]), "Content-Type": "application/json"},
    )
    assert response.status_code == status, response.text
    if status == 200:
        assert response.json()["ttl_seconds"] == 3600
    else:
        assert response.json()["code"] == "invalid"
