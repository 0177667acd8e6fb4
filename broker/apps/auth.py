"""The app origin's own credential: a browser signs in on the broker's origin and comes back with
a cookie good for that one app origin only.

The flow (every step on HTTPS in production; `*.localhost` over http in development):

1. A browser without a valid app cookie asks `https://APP/path` of a port it may not see
   anonymously. The app side answers 302 to the broker (`signin_url`) and sets a *state cookie*
   on APP: a random value, HttpOnly, 10 minutes. The URL carries the app host, the next path and
   the state's digest, never the state itself.
2. The broker's page, under the person's broker session (signing in first if needed), checks the
   person may see APP, and redirects to `https://APP/.pair/auth?ticket=T` (`return_url`). The
   ticket is an HMAC-signed claim of (user id, app host, the state digest, the next path, a
   nonce), valid for 60 s.
3. On APP, `/.pair/auth` (the proxy answers that path itself; the app never sees it) checks the
   ticket against this host, the state cookie's digest and the clock, claims its nonce once
   (`TicketLedger`), then sets the *app cookie* (a signed claim of user id, host, expiry and the
   broker session's id), deletes the state cookie, and redirects to the next path with
   `Referrer-Policy: no-referrer` and `Cache-Control: no-store`.
4. Each later request to APP carries the app cookie; the proxy verifies it for this host and then
   asks the broker's access rules whether that user may still see the port, so unshare, a level
   change or deleting the Space takes effect on the next request.

What it guarantees:
- The broker session cookie is host-only on the broker's origin and is never set on an app
  origin; the proxy also strips it (and this module's cookies) from what it forwards, so neither
  the app's server nor its pages can read or replay a broker credential.
- The app cookie has no Domain attribute (host-only: sibling app origins never receive it), is
  HttpOnly, SameSite=Lax, Path=/, and on https is named `__Host-pair_app`: browsers then refuse it
  unless Secure, host-only and Path=/, so a sibling app cannot plant one (RFC 6265bis §4.1.3.2).
  Its value names its host, so one carried to another origin is refused anyway.
- A ticket works once (its nonce), for 60 s, on the one host it names, in the browser that started
  the sign-in (the state cookie): a ticket leaked through history or logs is useless, and nobody
  can sign someone else's browser into an app as themselves (login CSRF).

HMAC-SHA256 with a broker secret (`load_secret`) rather than the Ed25519 keyring: nobody else
verifies these, and the app cookie is checked on every proxied request (the whole check took
~15 µs on the development machine, one Ed25519 verification ~220 µs). A new secret signs
everyone out of every app origin, nothing more.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlencode

import msgspec

AUTH_PATH = "/.pair/auth"  # on every app origin; answered by the proxy, never the app
TICKET_TTL = 60
STATE_TTL = 600
SECRET_BYTES = 32
PREFIX = "pair_app1"
MAX_TOKEN = 4096
MAX_NEXT = 2048

APP_COOKIE_HTTPS = "__Host-pair_app"
APP_COOKIE_HTTP = "__pair_app"
STATE_COOKIE_HTTPS = "__Host-pair_app_state"
STATE_COOKIE_HTTP = "__pair_app_state"
# Never forwarded to an app, never accepted from one (broker.apps.forwarding.ProxyOptions).
COOKIE_NAMES = frozenset({APP_COOKIE_HTTPS, APP_COOKIE_HTTP, STATE_COOKIE_HTTPS, STATE_COOKIE_HTTP})

TICKET = "ticket"
COOKIE = "cookie"


class CredentialRejected(Exception):
    """Why a ticket or app cookie was refused: `code` is one of malformed, bad_signature,
    wrong_kind, wrong_host, wrong_state, expired, replayed."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class _Claims(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    kind: str  # "ticket" or "cookie": one is never accepted as the other
    sub: str  # the user's id
    host: str  # the app's host name, lowercase, no port
    exp: int  # Unix seconds
    nonce: str
    sid: str = ""  # the broker session it came from, for the caller's revocation check
    state: str = ""  # ticket: the digest of the browser's state cookie
    next: str = "/"  # ticket: where to go after /.pair/auth


@dataclass(frozen=True, slots=True)
class Grant:
    """What a valid ticket or app cookie says."""

    user_id: str
    host: str
    expires_at: int
    nonce: str
    session_id: str
    next_path: str


class AppCredentials:
    """Issues and checks tickets and app cookies with one HMAC key (≥ 32 bytes)."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < SECRET_BYTES:
            raise ValueError(f"The app credential secret must be at least {SECRET_BYTES} bytes.")
        self._key = hashlib.sha256(b"pair app credentials v1\x00" + secret).digest()

    def ticket(
        self,
        *,
        user_id: str,
        host: str,
        state_digest: str,
        next_path: str,
        now: int,
        session_id: str = "",
        ttl: int = TICKET_TTL,
    ) -> str:
        """A ticket for `host` (lowercase name, no port), bound to the browser's state digest."""
        claims = _Claims(
            TICKET, user_id, host.lower(), now + ttl, _nonce(), session_id, state_digest, safe_next(next_path)
        )
        return self._seal(claims)

    def open_ticket(self, ticket: str, *, host: str, state: str, now: int) -> Grant:
        """Check a ticket presented on `host` by a browser whose state cookie is `state` (the raw
        value; "" when it has none). Does not check reuse: see `redeem`."""
        claims = self._open(ticket, TICKET, host, now)
        if not state or not hmac.compare_digest(claims.state, state_digest(state)):
            raise CredentialRejected("wrong_state")
        return _grant(claims)

    def cookie(self, *, user_id: str, host: str, now: int, ttl: int, session_id: str = "") -> str:
        """An app cookie's value for `host`, valid `ttl` seconds."""
        return self._seal(_Claims(COOKIE, user_id, host.lower(), now + ttl, _nonce(), session_id))

    def open_cookie(self, value: str, *, host: str, now: int) -> Grant:
        """Check an app cookie's value presented on `host`; raise CredentialRejected if it is not
        one this broker issued for this host and still valid. The caller then checks the person's
        access (and, if it wants, that `session_id` is still a live broker session)."""
        return _grant(self._open(value, COOKIE, host, now))

    def _seal(self, claims: _Claims) -> str:
        payload = _b64(msgspec.json.encode(claims))
        return f"{PREFIX}.{payload}.{self._mac(payload)}"

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, f"{PREFIX}.{payload}".encode(), hashlib.sha256).digest())

    def _open(self, token: str, kind: str, host: str, now: int) -> _Claims:
        prefix, _, rest = token.partition(".")
        payload, _, mac = rest.partition(".")
        if prefix != PREFIX or not payload or not mac or len(token) > MAX_TOKEN:
            raise CredentialRejected("malformed")
        if not hmac.compare_digest(mac.encode(), self._mac(payload).encode()):
            raise CredentialRejected("bad_signature")
        try:
            claims = msgspec.json.decode(_unb64(payload), type=_Claims)
        except (msgspec.DecodeError, ValueError) as exc:  # signed by us, so only a defect gets here
            raise CredentialRejected("malformed") from exc
        if claims.kind != kind:
            raise CredentialRejected("wrong_kind")
        if not hmac.compare_digest(claims.host.encode(), host.lower().encode()):
            raise CredentialRejected("wrong_host")
        if claims.exp <= now:
            raise CredentialRejected("expired")
        return claims


def _grant(claims: _Claims) -> Grant:
    return Grant(claims.sub, claims.host, claims.exp, claims.nonce, claims.sid, claims.next)


class TicketLedger(Protocol):
    """Remembers redeemed tickets until they expire, so each works once."""

    async def claim(self, nonce: str, expires_at: int, now: int) -> bool:
        """True the first time `nonce` is claimed, False after (until `expires_at` has passed)."""
        ...


class UsedTickets:
    """A TicketLedger in this process's memory: enough for one broker process (which the relay
    needs anyway); several processes need a shared one (a table with the nonce as key)."""

    def __init__(self) -> None:
        self._expiry: dict[str, int] = {}

    async def claim(self, nonce: str, expires_at: int, now: int) -> bool:
        if len(self._expiry) > 1024:
            self._expiry = {n: e for n, e in self._expiry.items() if e > now}
        if nonce in self._expiry and self._expiry[nonce] > now:
            return False
        self._expiry[nonce] = expires_at
        return True


async def redeem(
    credentials: AppCredentials, ledger: TicketLedger, *, ticket: str, host: str, state: str, now: int
) -> Grant:
    """`/.pair/auth`'s check: a valid ticket for this host and browser, not used before."""
    grant = credentials.open_ticket(ticket, host=host, state=state, now=now)
    if not await ledger.claim(grant.nonce, grant.expires_at, now):
        raise CredentialRejected("replayed")
    return grant


# -- the browser's side: state, URLs, cookies ------------------------------------------------


def new_state() -> tuple[str, str]:
    """A fresh state cookie value and its digest (the digest travels in URLs and the ticket)."""
    state = secrets.token_urlsafe(32)
    return state, state_digest(state)


def state_digest(state: str) -> str:
    return _b64(hashlib.sha256(b"pair app state v1\x00" + state.encode()).digest())


_NEXT_RE = re.compile(r"/(?![/\\])[\x21-\x7e]*")


def safe_next(path: str) -> str:
    """`path` if it is a path on the same origin (`/…`, not `//host` or `/\\host`, printable
    ASCII without spaces, at most 2048 characters), else `/`: never a way off the app origin."""
    if len(path) <= MAX_NEXT and _NEXT_RE.fullmatch(path) and "\\" not in path:
        return path
    return "/"


def signin_url(broker_url: str, signin_path: str, *, host: str, state_digest: str, next_path: str) -> str:
    """Where step 1 sends the browser: the broker's sign-in-for-an-app page."""
    query = urlencode({"host": host, "state": state_digest, "next": safe_next(next_path)})
    return f"{broker_url.rstrip('/')}{signin_path}?{query}"


def return_url(app_origin: str, ticket: str) -> str:
    """Where step 2 sends the browser back: `/.pair/auth` on the app's origin."""
    return f"{app_origin}{AUTH_PATH}?{urlencode({'ticket': ticket})}"


def cookie_names(*, secure: bool) -> tuple[str, str]:
    """(app cookie, state cookie) for an https (`__Host-` prefixed) or http app origin."""
    return (APP_COOKIE_HTTPS, STATE_COOKIE_HTTPS) if secure else (APP_COOKIE_HTTP, STATE_COOKIE_HTTP)


def set_cookie(name: str, value: str, *, max_age: int, secure: bool) -> bytes:
    """A Set-Cookie value: host-only (no Domain), Path=/, HttpOnly, SameSite=Lax, Secure on https.

    `value` is one of this module's tokens or states: base64url and dots, safe unquoted."""
    attributes = [f"{name}={value}", "Path=/", f"Max-Age={max_age}", "HttpOnly", "SameSite=Lax"]
    if secure:
        attributes.append("Secure")
    return "; ".join(attributes).encode()


def clear_cookie(name: str, *, secure: bool) -> bytes:
    return set_cookie(name, "", max_age=0, secure=secure)


def signed_in_headers(
    credentials: AppCredentials, grant: Grant, *, now: int, ttl: int, secure: bool
) -> list[tuple[bytes, bytes]]:
    """The headers of `/.pair/auth`'s 303 answer after `redeem`: the app cookie set, the state
    cookie cleared, on to the ticket's next path, no referrer, no caching."""
    app_cookie, state_cookie = cookie_names(secure=secure)
    value = credentials.cookie(user_id=grant.user_id, host=grant.host, now=now, ttl=ttl, session_id=grant.session_id)
    return [
        (b"location", grant.next_path.encode()),
        (b"set-cookie", set_cookie(app_cookie, value, max_age=ttl, secure=secure)),
        (b"set-cookie", clear_cookie(state_cookie, secure=secure)),
        (b"cache-control", b"no-store"),
        (b"referrer-policy", b"no-referrer"),
        (b"content-length", b"0"),
    ]


def read_cookie(cookie_header: str, name: str) -> str:
    """The value of cookie `name` in a Cookie field ("" if absent; the first one if repeated)."""
    for part in cookie_header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return ""


# -- the secret -----------------------------------------------------------------------------


def load_secret(path: Path) -> bytes:
    """The HMAC secret in `path`, created (32 random bytes, 0600) if absent.

    Created under a temporary name and linked into place, so processes starting together agree
    on one secret and none ever reads a half-written file."""
    with contextlib.suppress(FileNotFoundError):
        return _read_secret(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(SECRET_BYTES))
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another process won: use its secret
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    secret = path.read_bytes()
    if len(secret) < SECRET_BYTES:
        raise ValueError(f"{path} holds fewer than {SECRET_BYTES} bytes; delete it to have a new secret made.")
    return secret


def _nonce() -> str:
    return secrets.token_urlsafe(16)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
