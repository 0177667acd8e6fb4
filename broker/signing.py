"""Ed25519 signing keys for Space tokens, their JWKS, and token verification.

Keys live in the data dir, one 0600 JSON file each (`Keyring`), or, with an encryption key (and
always on PostgreSQL), sealed in the database (`broker.sealed_keys`). The newest signs; every
key stays published until no token it signed can still be valid, so rotation never breaks an
unexpired token. `pair-broker keys rotate` may run while the broker serves: the keyring reloads
when the directory (or the table) changes.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import jwt
import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pair.api.models import SpaceTokenClaims
from pair.api.tokens import AUDIENCE
from pair.files import write_private


@dataclass(frozen=True)
class SigningKey:
    kid: str
    created_at: int
    private: Ed25519PrivateKey

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @functools.cached_property
    def header(self) -> bytes:
        """The JWS header of every token this key signs, base64url-encoded once."""
        header = json.dumps({"alg": "EdDSA", "kid": self.kid, "typ": "JWT"}, separators=(",", ":"))
        return _b64(header.encode()).encode()

    def jwk(self) -> dict[str, str]:
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": _b64(_raw_public(self.public)),
            "kid": self.kid,
            "alg": "EdDSA",
            "use": "sig",
        }


# Why a token was refused (broker.agents maps each to its sentence and error code).
TokenFault = Literal[
    "malformed", "unknown_key", "bad_signature", "wrong_audience", "wrong_issuer", "not_yet_valid", "expired"
]


class TokenInvalid(Exception):
    """Why a token was refused, as a code the caller maps to a message."""

    def __init__(self, code: TokenFault, claims: dict[str, Any] | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.claims = claims or {}


SETTLE_NS = 2_000_000_000


class KeySet:
    """The keys tokens are signed and verified with, wherever they are kept: `Keyring` (files in
    the data dir) or `broker.sealed_keys.SealedKeyring` (sealed in the database, shared by
    replicas). The broker calls `update` before it signs or verifies, and `add_key` to rotate."""

    def __init__(self, *, retain_seconds: int) -> None:
        self.retain_seconds = retain_seconds
        self._keys: list[SigningKey] = []
        self._jwks: bytes = b""

    async def update(self, *, force: bool = False) -> None:
        """Pick up keys other processes added or pruned (cheaply; `force`: look now)."""
        raise NotImplementedError

    async def add_key(self, now: int | None = None) -> SigningKey:
        """Rotate: add a new signing key; drop keys retired long enough that nothing they signed
        is valid."""
        raise NotImplementedError

    def _install(self, keys: list[SigningKey]) -> None:
        self._keys = sorted(keys, key=lambda k: (k.created_at, k.kid), reverse=True)
        self._jwks = json.dumps({"keys": [k.jwk() for k in self._keys]}, separators=(",", ":")).encode()

    @property
    def keys(self) -> list[SigningKey]:
        return list(self._keys)

    @property
    def active(self) -> SigningKey:
        return self._keys[0]

    def jwks(self) -> bytes:
        return self._jwks

    # -- tokens -----------------------------------------------------------------------------

    def sign(self, claims: SpaceTokenClaims) -> str:
        """A compact JWS (RFC 7515) of `claims`: what PyJWT's encode produces, without its
        per-call JSON and header work (token issuance is a hot path; tests verify with joserfc)."""
        key = self.active
        signing_input = key.header + b"." + _b64(msgspec.json.encode(claims)).encode()
        return (signing_input + b"." + _b64(key.private.sign(signing_input)).encode()).decode()

    def verify(self, token: str, *, issuer: str, now: int, leeway: int = 30) -> SpaceTokenClaims:
        """Check the token's form, signature, audience, issuer and times; raise TokenInvalid
        with the reason. Anything but the shape this keyring signs (RFC 7515/7519: header
        `{"alg": "EdDSA", "kid": str}` without `crit`, claims of the types SpaceTokenClaims
        names, at most MAX_TOKEN_LENGTH characters) is "malformed", whoever signed it."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
            raise TokenInvalid("malformed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:  # bad base64 or JSON, a non-string kid, a crit PyJWT knows
            raise TokenInvalid("malformed") from exc
        kid = header.get("kid")
        # RFC 7515 4.1.11: a critical extension must be understood, and this broker uses none.
        if header.get("alg") != "EdDSA" or not isinstance(kid, str) or "crit" in header:
            raise TokenInvalid("malformed")
        key = next((k for k in self._keys if k.kid == kid), None)
        if key is None:
            raise TokenInvalid("unknown_key")
        try:
            payload = jwt.PyJWS().decode(token, key.public, algorithms=["EdDSA"])
        except jwt.InvalidSignatureError as exc:
            raise TokenInvalid("bad_signature") from exc
        except jwt.PyJWTError as exc:
            raise TokenInvalid("malformed") from exc
        try:
            claims = _CLAIMS(payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:  # a missing claim, a wrong type
            raise TokenInvalid("malformed") from exc
        named = {k: v for k, v in msgspec.structs.asdict(claims).items() if v is not msgspec.UNSET}
        if claims.aud != AUDIENCE:
            raise TokenInvalid("wrong_audience")
        if claims.iss != issuer:
            raise TokenInvalid("wrong_issuer", named)
        # Times are checked after the signature, so an expired token can still be named.
        nbf = claims.iat if isinstance(claims.nbf, msgspec.UnsetType) else claims.nbf
        if nbf > now + leeway or claims.iat > now + leeway:
            raise TokenInvalid("not_yet_valid", named)
        if claims.exp <= now - leeway:
            raise TokenInvalid("expired", named)
        return SpaceTokenClaims(
            iss=claims.iss, aud=claims.aud, sub=claims.sub, iat=claims.iat, nbf=nbf, exp=claims.exp, jti=claims.jti
        )


class Keyring(KeySet):
    """Keys in the data dir, one 0600 JSON file each (the default, without an encryption key)."""

    def __init__(self, directory: Path, *, retain_seconds: int) -> None:
        super().__init__(retain_seconds=retain_seconds)
        self.directory = directory
        self._stamp: tuple[str, ...] | None = None
        self._settled_mtime: int | None = None

    async def update(self, *, force: bool = False) -> None:
        if force:
            self._settled_mtime = None
        self.refresh()

    async def add_key(self, now: int | None = None) -> SigningKey:
        return self.rotate(now)

    # -- loading and rotation ---------------------------------------------------------------

    def load(self) -> None:
        """Read the keys, creating the first one on first start."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not any(self.directory.glob("*.json")):
            self.rotate()
        self._reload()

    def _listing(self) -> tuple[str, ...]:
        return tuple(sorted(e.name for e in os.scandir(self.directory) if e.name.endswith(".json")))

    def _reload(self) -> None:
        # The stamp is the listing actually read, so a key added meanwhile shows up next refresh.
        names = self._listing()
        keys = []
        for name in names:
            try:
                data = json.loads((self.directory / name).read_text())
            except FileNotFoundError:
                continue  # pruned by another process since the listing
            keys.append(from_pem(data["kid"], int(data["created_at"]), data["private_key"]))
        self._install(keys)
        self._stamp = names

    def refresh(self) -> None:
        """Pick up keys another process added or pruned: one stat while nothing changed.

        Adding or removing a key file moves the directory's mtime. The clock behind mtimes is
        coarse (a change within the same tick keeps it), so an mtime is trusted only once it is
        older than SETTLE_NS at the time the listing is read; until then every call lists."""
        mtime = os.stat(self.directory).st_mtime_ns
        if mtime == self._settled_mtime:
            return
        settled = time.time_ns() - mtime > SETTLE_NS
        if self._listing() != self._stamp:
            self._reload()
        self._settled_mtime = mtime if settled else None

    def rotate(self, now: int | None = None) -> SigningKey:
        """Add a new signing key; drop keys retired long enough that nothing they signed is valid."""
        key = generate(now)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        body = json.dumps({"kid": key.kid, "created_at": key.created_at, "private_key": private_pem(key)}).encode()
        write_private(self.directory / f"{key.created_at:012d}-{key.kid}.json", body)
        now = key.created_at
        self._prune(now)
        self._reload()
        return self._keys[0]

    def _prune(self, now: int) -> None:
        files = {path.name.split(".", 1)[0]: path for path in self.directory.glob("*.json")}
        created = [(name, int(name.split("-", 1)[0])) for name in files]
        for name in retired(created, now, self.retain_seconds):
            files[name].unlink()


def retired(keys: list[tuple[str, int]], now: int, retain_seconds: int) -> list[str]:
    """Which of `keys` ((name, created_at) pairs) may go: a key is retired when its successor is
    created, and can have signed tokens until then, valid for up to `retain_seconds` more."""
    out = []
    successor_created: int | None = None
    for name, created in sorted(keys, key=lambda k: (k[1], k[0]), reverse=True):
        if successor_created is not None and now - successor_created > retain_seconds:
            out.append(name)
        successor_created = created
    return out


def generate(now: int | None = None) -> SigningKey:
    """A new Ed25519 key, its id the RFC 7638 thumbprint, created at `now` (default: the time)."""
    private = Ed25519PrivateKey.generate()
    return SigningKey(_thumbprint(private.public_key()), int(time.time()) if now is None else now, private)


def private_pem(key: SigningKey) -> str:
    """The private key as PKCS#8 PEM (RFC 5958), unencrypted: seal it or keep it 0600."""
    return key.private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def from_pem(kid: str, created_at: int, pem: str | bytes) -> SigningKey:
    """The key `private_pem` wrote. ValueError when it is not an Ed25519 private key."""
    private = serialization.load_pem_private_key(pem.encode() if isinstance(pem, str) else pem, password=None)
    if not isinstance(private, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 private key")
    return SigningKey(kid, int(created_at), private)


MAX_TOKEN_LENGTH = 4096  # characters; this broker's tokens are about 400
# A NumericDate (RFC 7519 2) as this broker writes it: whole seconds, before the year 10000.
Seconds = Annotated[int, msgspec.Meta(ge=0, lt=253_402_300_800)]
Text = Annotated[str, msgspec.Meta(max_length=1024)]


class _TokenClaims(msgspec.Struct):
    """The claims a Space token must carry, typed: what verify accepts (nbf may be absent)."""

    iss: Text
    aud: Text
    sub: Text
    iat: Seconds
    exp: Seconds
    jti: Text
    nbf: Seconds | msgspec.UnsetType = msgspec.UNSET  # absent means iat; null is malformed


_CLAIMS = msgspec.json.Decoder(_TokenClaims).decode


def _raw_public(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _thumbprint(public: Ed25519PublicKey) -> str:
    """RFC 7638 JWK thumbprint: a key id anyone can recompute from the JWKS."""
    canonical = json.dumps(
        {"crv": "Ed25519", "kty": "OKP", "x": _b64(_raw_public(public))}, separators=(",", ":"), sort_keys=True
    )
    return _b64(hashlib.sha256(canonical.encode()).digest())
