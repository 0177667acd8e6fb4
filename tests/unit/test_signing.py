"""broker.signing.Keyring: key files, the JWKS, sign/verify, rotation, pruning and reloads.

Tokens are checked three ways: by the keyring itself, by PyJWT from the published JWKS entry,
and by joserfc, an independent JOSE implementation, so the JWKS is usable by anyone.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from joserfc import jwt as jose_jwt
from joserfc.errors import BadSignatureError, InvalidKeyIdError, SecurityWarning
from joserfc.jwk import KeySet

from broker.signing import Keyring, TokenInvalid
from pair.api.models import SpaceTokenClaims
from pair.api.tokens import AUDIENCE

ISSUER = "https://pair.example.com"
T0 = 1_800_000_000
RETAIN = 1000


def claims(
    now: int = T0,
    *,
    ttl: int = 3600,
    iss: str = ISSUER,
    aud: str = AUDIENCE,
    sub: str = "sp_k3v9q2m7x4hd",
    jti: str = "tok_1",
) -> SpaceTokenClaims:
    return SpaceTokenClaims(iss=iss, aud=aud, sub=sub, iat=now, nbf=now, exp=now + ttl, jti=jti)


def b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def header_of(token: str) -> dict[str, Any]:
    header: dict[str, Any] = json.loads(b64decode(token.split(".")[0]))
    return header


def flip_char(token: str, part: int) -> str:
    """Change one character in the middle of a part to another base64url character."""
    parts = token.split(".")
    segment = parts[part]
    i = len(segment) // 2
    replacement = "A" if segment[i] != "A" else "B"
    parts[part] = segment[:i] + replacement + segment[i + 1 :]
    assert parts[part] != segment
    return ".".join(parts)


def jwks_of(keyring: Keyring) -> list[dict[str, str]]:
    keys: list[dict[str, str]] = json.loads(keyring.jwks())["keys"]
    return keys


def key_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.json"))


def kids(keyring: Keyring) -> set[str]:
    return {k.kid for k in keyring.keys}


def expect_invalid(code: str, call: Callable[[], object]) -> TokenInvalid:
    with pytest.raises(TokenInvalid) as info:
        call()
    assert info.value.code == code
    return info.value


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    return tmp_path / "data" / "signing-keys"


@pytest.fixture
def keyring(keys_dir: Path) -> Keyring:
    """A keyring whose first key was created at T0 (explicit times keep rotation order deterministic)."""
    kr = Keyring(keys_dir, retain_seconds=RETAIN)
    kr.rotate(now=T0)
    kr.load()
    return kr


# -- first load, files and the JWKS --------------------------------------------------------------


def test_first_load_creates_one_private_key_file_in_a_private_dir(keys_dir: Path) -> None:
    kr = Keyring(keys_dir, retain_seconds=RETAIN)
    kr.load()

    files = key_files(keys_dir)
    assert len(files) == 1
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    # No temp files are left beside it.
    assert [p.name for p in keys_dir.iterdir()] == [files[0].name]
    assert len(kr.keys) == 1
    assert json.loads(files[0].read_text())["kid"] == kr.active.kid


def test_loading_again_reuses_the_existing_key(keys_dir: Path) -> None:
    first = Keyring(keys_dir, retain_seconds=RETAIN)
    first.load()
    second = Keyring(keys_dir, retain_seconds=RETAIN)
    second.load()

    assert len(key_files(keys_dir)) == 1
    assert second.active.kid == first.active.kid
    assert second.jwks() == first.jwks()


def test_jwks_entry_is_an_ed25519_signing_key(keyring: Keyring) -> None:
    (entry,) = jwks_of(keyring)
    assert entry["kty"] == "OKP"
    assert entry["crv"] == "Ed25519"
    assert entry["alg"] == "EdDSA"
    assert entry["use"] == "sig"
    assert entry["kid"] == keyring.active.kid
    assert len(b64decode(entry["x"])) == 32
    # Only the public half is published.
    assert "d" not in entry
    raw = keyring.active.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert b64decode(entry["x"]) == raw


def test_kid_is_the_rfc7638_thumbprint_of_the_published_key(keyring: Keyring) -> None:
    (entry,) = jwks_of(keyring)
    # RFC 7638 §3.2: required members only, lexicographic order, no whitespace.
    canonical = '{"crv":"Ed25519","kty":"OKP","x":"' + entry["x"] + '"}'
    assert entry["kid"] == b64encode(hashlib.sha256(canonical.encode()).digest())
    # joserfc computes the same thumbprint independently.
    jwks: Any = {"keys": [entry]}
    assert KeySet.import_key_set(jwks).keys[0].thumbprint() == entry["kid"]


# -- sign and verify ------------------------------------------------------------------------------


def test_sign_verify_round_trip_returns_the_claims(keyring: Keyring) -> None:
    original = claims()
    token = keyring.sign(original)
    assert keyring.verify(token, issuer=ISSUER, now=T0 + 60) == original


def test_token_header_names_the_algorithm_and_the_key(keyring: Keyring) -> None:
    header = header_of(keyring.sign(claims()))
    assert header["alg"] == "EdDSA"
    assert header["kid"] == keyring.active.kid


def test_verify_accepts_a_token_within_the_leeway_after_expiry(keyring: Keyring) -> None:
    c = claims(ttl=600)
    assert keyring.verify(keyring.sign(c), issuer=ISSUER, now=c.exp + 10, leeway=30) == c


def test_pyjwt_verifies_a_token_with_the_published_jwk(keyring: Keyring) -> None:
    now = int(time.time())
    token = keyring.sign(claims(now))
    (entry,) = jwks_of(keyring)

    key = jwt.PyJWK(entry)
    decoded = jwt.decode(token, key, algorithms=["EdDSA"], audience=AUDIENCE, issuer=ISSUER)

    assert decoded["sub"] == "sp_k3v9q2m7x4hd"
    assert decoded["jti"] == "tok_1"
    assert decoded["exp"] == now + 3600
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(flip_char(token, 2), key, algorithms=["EdDSA"], audience=AUDIENCE, issuer=ISSUER)


def test_joserfc_verifies_a_token_with_the_published_jwks(keyring: Keyring, tmp_path: Path) -> None:
    now = int(time.time())
    token = keyring.sign(claims(now, jti="tok_jose"))
    key_set = KeySet.import_key_set(json.loads(keyring.jwks()))
    other = Keyring(tmp_path / "other", retain_seconds=RETAIN)
    other.load()
    other_set = KeySet.import_key_set(json.loads(other.jwks()))

    with warnings.catch_warnings():
        # joserfc flags the "EdDSA" name as deprecated by RFC 9864 in favour of "Ed25519".
        warnings.simplefilter("ignore", SecurityWarning)
        decoded = jose_jwt.decode(token, key_set, algorithms=["EdDSA"])
        with pytest.raises(BadSignatureError):
            jose_jwt.decode(flip_char(token, 2), key_set, algorithms=["EdDSA"])
        with pytest.raises(InvalidKeyIdError):
            jose_jwt.decode(token, other_set, algorithms=["EdDSA"])

    assert decoded.header["alg"] == "EdDSA"
    assert decoded.header["kid"] == keyring.active.kid
    registry = jose_jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": AUDIENCE},
        sub={"essential": True, "value": "sp_k3v9q2m7x4hd"},
        jti={"essential": True, "value": "tok_jose"},
    )
    registry.validate(decoded.claims)  # also checks exp, nbf and iat against the real clock
    assert decoded.claims["exp"] == now + 3600


# -- refusals -------------------------------------------------------------------------------------


def test_expired_token_is_refused_with_its_claims(keyring: Keyring) -> None:
    c = claims(ttl=600)
    token = keyring.sign(c)
    error = expect_invalid("expired", lambda: keyring.verify(token, issuer=ISSUER, now=c.exp + 31, leeway=30))
    assert error.claims["sub"] == c.sub
    assert error.claims["jti"] == c.jti


def test_token_from_the_future_is_not_yet_valid(keyring: Keyring) -> None:
    c = claims(T0 + 3600)
    token = keyring.sign(c)
    error = expect_invalid("not_yet_valid", lambda: keyring.verify(token, issuer=ISSUER, now=T0, leeway=30))
    assert error.claims["sub"] == c.sub
    # Within the leeway (a little clock skew) it is accepted.
    assert keyring.verify(token, issuer=ISSUER, now=c.iat - 10, leeway=30) == c


@pytest.mark.parametrize("part", [1, 2], ids=["payload", "signature"])
def test_one_changed_character_breaks_the_signature(keyring: Keyring, part: int) -> None:
    token = flip_char(keyring.sign(claims()), part)
    expect_invalid("bad_signature", lambda: keyring.verify(token, issuer=ISSUER, now=T0))


def test_token_signed_by_another_keyring_is_an_unknown_key(keyring: Keyring, tmp_path: Path) -> None:
    other = Keyring(tmp_path / "elsewhere", retain_seconds=RETAIN)
    other.load()
    token = other.sign(claims())
    expect_invalid("unknown_key", lambda: keyring.verify(token, issuer=ISSUER, now=T0))


def test_wrong_audience_is_refused(keyring: Keyring) -> None:
    token = keyring.sign(claims(aud="someone-else"))
    expect_invalid("wrong_audience", lambda: keyring.verify(token, issuer=ISSUER, now=T0))


def test_wrong_issuer_is_refused_with_its_claims(keyring: Keyring) -> None:
    token = keyring.sign(claims(iss="https://other.example.com"))
    error = expect_invalid("wrong_issuer", lambda: keyring.verify(token, issuer=ISSUER, now=T0))
    assert error.claims["iss"] == "https://other.example.com"


@pytest.mark.parametrize("token", ["", "garbage", "only.two", "a.b.c", "...", "eyJhbGciOiJFZERTQSJ9.e30"])
def test_garbage_is_malformed(keyring: Keyring, token: str) -> None:
    expect_invalid("malformed", lambda: keyring.verify(token, issuer=ISSUER, now=T0))


@pytest.mark.parametrize("kind", ["none", "HS256", "HS256-with-the-public-key"])
def test_alg_none_and_hmac_tokens_are_malformed(keyring: Keyring, kind: str) -> None:
    payload = {f: getattr(claims(), f) for f in SpaceTokenClaims.__struct_fields__}
    kid = {"kid": keyring.active.kid}  # a known key id: only the algorithm is wrong
    public_bytes = keyring.active.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if kind == "none":
        token = jwt.encode(payload, "", algorithm="none", headers=kid)
    elif kind == "HS256":
        token = jwt.encode(payload, "s" * 64, algorithm="HS256", headers=kid)
    else:
        # The classic confusion attack: HMAC keyed with the (public) verification key.
        token = jwt.encode(payload, public_bytes, algorithm="HS256", headers=kid)
    assert header_of(token)["kid"] == keyring.active.kid
    expect_invalid("malformed", lambda: keyring.verify(token, issuer=ISSUER, now=T0))


def test_token_missing_a_required_claim_is_malformed(keyring: Keyring) -> None:
    payload = {f: getattr(claims(), f) for f in SpaceTokenClaims.__struct_fields__}
    del payload["jti"]
    token = jwt.encode(payload, keyring.active.private, algorithm="EdDSA", headers={"kid": keyring.active.kid})
    expect_invalid("malformed", lambda: keyring.verify(token, issuer=ISSUER, now=T0))


# -- rotation, reloads and pruning ----------------------------------------------------------------


def test_rotation_keeps_old_tokens_valid_and_signs_with_the_new_key(keyring: Keyring) -> None:
    old_kid = keyring.active.kid
    old_token = keyring.sign(claims(jti="before"))

    new = keyring.rotate(now=T0 + 100)

    assert new.kid != old_kid
    assert keyring.active.kid == new.kid
    assert keyring.verify(old_token, issuer=ISSUER, now=T0 + 200).jti == "before"
    new_token = keyring.sign(claims(T0 + 100, jti="after"))
    assert header_of(new_token)["kid"] == new.kid
    assert keyring.verify(new_token, issuer=ISSUER, now=T0 + 200).jti == "after"
    assert {e["kid"] for e in jwks_of(keyring)} == {old_kid, new.kid}
    assert len(key_files(keyring.directory)) == 2


def test_refresh_picks_up_a_key_another_process_rotated(keyring: Keyring, keys_dir: Path) -> None:
    other = Keyring(keys_dir, retain_seconds=RETAIN)
    other.load()
    new = other.rotate(now=T0 + 100)
    token = other.sign(claims(T0 + 100, jti="from-other"))

    keyring.refresh()

    assert keyring.active.kid == new.kid
    assert kids(keyring) == kids(other)
    assert {e["kid"] for e in jwks_of(keyring)} == kids(other)
    assert keyring.verify(token, issuer=ISSUER, now=T0 + 200).jti == "from-other"


def test_refresh_without_changes_keeps_the_keys(keyring: Keyring) -> None:
    before = keyring.jwks()
    keyring.refresh()
    assert keyring.jwks() == before
    assert len(keyring.keys) == 1


def test_prune_drops_keys_whose_successor_is_older_than_retain(keyring: Keyring) -> None:
    k1 = keyring.active
    k1_token = keyring.sign(claims(jti="k1"))
    k2 = keyring.rotate(now=T0 + 10)
    k3 = keyring.rotate(now=T0 + 20)
    assert kids(keyring) == {k1.kid, k2.kid, k3.kid}

    # k2's successor (k3) was created exactly RETAIN ago: kept. k1's successor (k2) RETAIN + 10 ago: pruned,
    # even though k2 itself is older than RETAIN (it is the successor's age that counts).
    k4 = keyring.rotate(now=T0 + 20 + RETAIN)

    assert kids(keyring) == {k2.kid, k3.kid, k4.kid}
    assert {e["kid"] for e in jwks_of(keyring)} == {k2.kid, k3.kid, k4.kid}
    assert len(key_files(keyring.directory)) == 3
    expect_invalid("unknown_key", lambda: keyring.verify(k1_token, issuer=ISSUER, now=T0))


def test_prune_never_drops_the_active_key(keyring: Keyring) -> None:
    first = keyring.active
    token = keyring.sign(claims(jti="first"))
    # Far in the future: every key but the newest two has a long-retired successor.
    second = keyring.rotate(now=T0 + 100 * RETAIN)
    assert kids(keyring) == {first.kid, second.kid}  # first was retired just now: still needed
    assert keyring.verify(token, issuer=ISSUER, now=T0 + 100).jti == "first"

    third = keyring.rotate(now=T0 + 200 * RETAIN)
    assert keyring.active.kid == third.kid
    assert kids(keyring) == {second.kid, third.kid}
    assert any(third.kid in p.name for p in key_files(keyring.directory))


# -- reloading while another process rotates ------------------------------------------------------


def _arm_once(monkeypatch: pytest.MonkeyPatch, action: Callable[[], object]) -> list[bool]:
    """Run `action` the first time the keyring parses a key file, i.e. after it listed the directory."""
    real = serialization.load_pem_private_key
    fired: list[bool] = []

    def hook(*args: Any, **kwargs: Any) -> Any:
        if not fired:
            fired.append(True)
            action()
        return real(*args, **kwargs)

    monkeypatch.setattr(serialization, "load_pem_private_key", hook)
    return fired


def test_key_added_while_reloading_is_seen_by_the_next_refresh(
    keyring: Keyring, keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = Keyring(keys_dir, retain_seconds=RETAIN)
    other.load()
    other.rotate(now=T0 + 10)  # gives `keyring` a reason to reload
    fired = _arm_once(monkeypatch, lambda: other.rotate(now=T0 + 20))

    keyring.refresh()  # lists the directory, then `other` adds a key before the stamp is taken
    assert fired
    keyring.refresh()

    assert kids(keyring) == kids(other)
    assert len(kids(other)) == 3


def test_key_pruned_while_reloading_does_not_break_the_reload(
    keyring: Keyring, keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keyring.rotate(now=T0 + 10)
    keyring.rotate(now=T0 + 20)
    other = Keyring(keys_dir, retain_seconds=RETAIN)
    other.load()
    reader = Keyring(keys_dir, retain_seconds=RETAIN)
    # Whichever file `reader` parses first, at least one it listed is pruned before it reads it.
    fired = _arm_once(monkeypatch, lambda: other.rotate(now=T0 + 20 + 10 * RETAIN))

    reader.load()
    assert fired
    reader.refresh()

    assert kids(reader) == kids(other)
    assert len(kids(other)) == 2


def test_refresh_sees_a_new_key_even_if_the_directory_mtime_did_not_move(keyring: Keyring, keys_dir: Path) -> None:
    # Filesystems and older kernels stamp mtimes coarsely (a jiffy, or a whole second): a rotation right
    # after the broker's last reload can leave the directory's mtime unchanged. Simulate exactly that.
    before = os.stat(keys_dir)
    other = Keyring(keys_dir, retain_seconds=RETAIN)
    other.load()
    new = other.rotate(now=T0 + 100)
    os.utime(keys_dir, ns=(before.st_atime_ns, before.st_mtime_ns))

    keyring.refresh()

    assert keyring.active.kid == new.kid


def test_refresh_reads_the_directory_again_only_when_its_mtime_moved(
    keyring: Keyring, keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Token issuance refreshes on every call, so an unchanged directory must cost one stat, not a listing.
    settled = time.time_ns() - 10_000_000_000
    os.utime(keys_dir, ns=(settled, settled))
    listings: list[str] = []
    real_scandir = os.scandir

    def counting_scandir(path: Any) -> Any:
        listings.append(str(path))
        return real_scandir(path)

    monkeypatch.setattr("broker.signing.os.scandir", counting_scandir)
    keyring.refresh()  # the first look at this mtime lists, and trusts the mtime from now on
    keyring.refresh()
    keyring.refresh()
    assert len(listings) == 1

    other = Keyring(keys_dir, retain_seconds=RETAIN)
    other.load()
    new = other.rotate(now=T0 + 100)
    keyring.refresh()

    assert keyring.active.kid == new.kid
    assert len(listings) >= 2


def test_signed_token_is_byte_for_byte_what_pyjwt_encodes(keyring: Keyring) -> None:
    # Keyring.sign builds the compact JWS itself (a hot path); it must stay the standard encoding.
    c = claims(jti="same-bytes")
    key = keyring.active
    expected = jwt.encode(
        {f: getattr(c, f) for f in c.__struct_fields__}, key.private, algorithm="EdDSA", headers={"kid": key.kid}
    )
    assert keyring.sign(c) == expected
