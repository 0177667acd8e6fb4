"""The broker's JSON endpoints as plain ASGI apps (broker/http.py): every failure still answers
`{"message", "detail", "code"}` with the right status, on the dict-routed hot paths and on the
routes with path parameters alike."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from broker import spaces
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
