"""pair.api.errors.answered: the one reading of a broker's error answer, shared by the HTTP client
and the proxy (which refuses a tunnel with the same body)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from pair.api.errors import ApiError, AuthError, answered, login_hint

URL = "https://broker.example"


def test_a_problem_body_is_read_whole() -> None:
    body = json.dumps({"message": "Nope.", "detail": "Try later.", "code": "starting"}).encode()
    error = answered(503, body, URL)
    assert (type(error), error.status, error.message, error.hint, error.code) == (
        ApiError,
        503,
        "Nope.",
        "Try later.",
        "starting",
    )


def test_a_401_without_detail_says_how_to_sign_in() -> None:
    error = answered(401, b'{"message": "Expired.", "code": "unauthenticated"}', URL)
    assert isinstance(error, AuthError)
    assert error.hint == login_hint(URL)
    assert f"--url {URL}" in error.hint


@given(status=st.integers(400, 599), content=st.binary() | st.text().map(str.encode))
def test_any_answer_becomes_one_sentence_and_a_hint(status: int, content: bytes) -> None:
    """Whatever came back (a proxy's HTML page, a truncated body, JSON of another shape), the
    person gets a sentence and a hint, never a traceback."""
    error = answered(status, content, URL)
    assert isinstance(error, AuthError) == (status == 401)
    assert error.status == status
    assert error.message
    assert isinstance(error.hint, str) and isinstance(error.code, str)


@given(
    body=st.dictionaries(
        st.sampled_from(["message", "detail", "code", "other"]),
        st.none() | st.integers() | st.text() | st.lists(st.text(), max_size=2),
    )
)
def test_fields_of_the_wrong_type_are_not_shown(body: dict[str, object]) -> None:
    error = answered(500, json.dumps(body).encode(), URL)
    message = body.get("message")
    if isinstance(message, str) and message:
        assert error.message == message
    else:
        assert error.message == "The broker answered HTTP 500 without an error message."
    assert isinstance(error.hint, str) and isinstance(error.code, str)
