"""Space tokens of every shape but the right one: signed with the broker's real key, so only the
structure is wrong, and refused as "malformed" (HTTP 401 token_malformed at bootstrap), never
an exception of another kind (a 500 with a traceback, unauthenticated).

Each field of the header and the claims is drawn either from its valid values or from values
that break it, so the expected outcome is known from how the token was built."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.signing import MAX_TOKEN_LENGTH, KeySet, TokenInvalid
from pair.api.tokens import AUDIENCE
from tests.support.broker import TEST_URL, InProcessBroker, in_process_broker

NOW = 1_800_000_000
FINE = {"iss": TEST_URL, "aud": AUDIENCE, "sub": "sp_k3v9q2m7x4hd", "jti": "j1", "iat": NOW, "nbf": NOW}
FINE_EXP = NOW + 3600
ABSENT = object()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
not_strings = json_values.filter(lambda v: not isinstance(v, str))
# A NumericDate the broker refuses: not a whole number (bool is not one), or out of range.
bad_seconds = json_values.filter(lambda v: not isinstance(v, int) or isinstance(v, bool)) | st.one_of(
    st.integers(max_value=-1), st.integers(min_value=253_402_300_800)
)


@st.composite
def shapes(draw: st.DrawFn, kid: str) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """(header, claims, well_formed): each field valid, broken, or (where optional) absent."""
    broken = False

    def pick(valid: st.SearchStrategy[Any], bad: st.SearchStrategy[Any], *, optional: bool = False) -> Any:
        nonlocal broken
        choice = draw(st.sampled_from(["valid", "bad", "absent"] if optional else ["valid", "bad"]))
        if choice == "valid":
            return draw(valid)
        if choice == "bad":
            broken = True
            return draw(bad)
        return ABSENT

    header = {
        "alg": pick(st.just("EdDSA"), json_values.filter(lambda v: v != "EdDSA")),
        "kid": pick(st.just(kid), not_strings),
        "typ": draw(st.sampled_from(["JWT", ABSENT])),
    }
    if draw(st.booleans()):
        header["crit"] = draw(json_values)  # any crit at all: this broker understands no extension
        broken = True
    claims = {name: pick(st.just(value), not_strings) for name, value in FINE.items() if name not in ("iat", "nbf")}
    claims["iat"] = pick(st.just(NOW), bad_seconds)
    claims["nbf"] = pick(st.just(NOW), bad_seconds, optional=True)
    claims["exp"] = pick(st.just(FINE_EXP), bad_seconds)
    drop = {k: v for k, v in header.items() if v is not ABSENT}, {k: v for k, v in claims.items() if v is not ABSENT}
    return drop[0], drop[1], not broken


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(keyring: KeySet, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """A compact JWS of exactly these JSON objects, signed with the keyring's real key."""
    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    return signing_input + "." + b64(keyring.active.private.sign(signing_input.encode()))


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessBroker]:
    with in_process_broker(tmp_path_factory.mktemp("broker")) as b:
        b.clock.now = NOW
        yield b


def verify(keyring: KeySet, token: str) -> str:
    """The outcome: "ok" or the TokenInvalid code (any other exception fails the test)."""
    try:
        keyring.verify(token, issuer=TEST_URL, now=NOW)
    except TokenInvalid as exc:
        return exc.code
    return "ok"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_token_of_any_shape_is_refused_as_malformed_unless_well_formed(
    broker: InProcessBroker, data: st.DataObject
) -> None:
    keyring = broker.ctx.keyring
    header, claims, well_formed = data.draw(shapes(keyring.active.kid))
    outcome = verify(keyring, signed(keyring, header, claims))
    assert outcome == ("ok" if well_formed else "malformed"), (header, claims)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_bootstrap_answers_a_broken_token_with_401_token_malformed(
    broker: InProcessBroker, data: st.DataObject
) -> None:
    keyring = broker.ctx.keyring
    header, claims, _well_formed = data.draw(shapes(keyring.active.kid).filter(lambda shape: not shape[2]))
    response = broker.http.post(
        "/api/v1/agent/bootstrap",
        json={"token": signed(keyring, header, claims), "instance_id": "inst_1", "facts": {}},
    )
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "token_malformed"
    assert response.headers["www-authenticate"] == "Bearer"


def _with(token: str, part: int, value: str) -> str:
    parts = token.split(".")
    parts[part] = value
    return ".".join(parts)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t + "A" * MAX_TOKEN_LENGTH,  # huge: refused before any decoding
        lambda t: "A" * 60_000,
        lambda t: _with(t, 0, "!!!not-base64!!!"),
        lambda t: _with(t, 0, b64(b"not json")),
        lambda t: _with(t, 0, b64(b"[1, 2]")),
        lambda t: _with(t, 0, b64(b'{"alg": "EdDSA", "kid": 123}')),
        lambda t: _with(t, 1, "%%%"),
        lambda t: _with(t, 2, "***"),
        lambda t: t.replace(".", "..", 1),
        lambda t: t + ".extra",
    ],
    ids=[
        "over-the-limit",
        "60k",
        "header-not-base64",
        "header-not-json",
        "header-an-array",
        "kid-a-number",
        "payload-not-base64",
        "signature-not-base64",
        "four-parts",
        "extra-part",
    ],
)
def test_bad_encodings_are_malformed_at_the_keyring_and_at_bootstrap(broker: InProcessBroker, mangle: Any) -> None:
    keyring = broker.ctx.keyring
    token = mangle(signed(keyring, {"alg": "EdDSA", "kid": keyring.active.kid}, {**FINE, "exp": FINE_EXP}))
    assert verify(keyring, token) == "malformed"
    response = broker.http.post("/api/v1/agent/bootstrap", json={"token": token, "instance_id": "inst_1", "facts": {}})
    assert (response.status_code, response.json()["code"]) == (401, "token_malformed")


def test_the_generator_makes_well_formed_tokens_that_verify(broker: InProcessBroker) -> None:
    """The valid branch of every field really is valid: the oracle above is not vacuous."""
    keyring = broker.ctx.keyring
    token = signed(keyring, {"alg": "EdDSA", "kid": keyring.active.kid}, {**FINE, "exp": FINE_EXP})
    assert verify(keyring, token) == "ok"
