"""The web page's defences in one place: response headers, cookies, CSRF tokens, signed flashes,
a new secret shown once after a redirect (sealed, never in a URL).

- Every web response carries a strict Content-Security-Policy (no inline script, no framing;
  the terminal page alone also admits `<style>` elements with its per-response nonce),
  `nosniff`, `no-referrer`, and `no-store` for pages (they hold a CSRF token and personal data).
- The session cookie is HttpOnly, SameSite=Lax, Path=/, host-only; on https (the request or
  the public URL) it is Secure and named `__Host-pair_session`, which no other origin can set.
  Over http a sibling origin can still set one for a parent domain (cookie tossing): a
  session cookie sent twice is refused, never guessed at (`read_cookie`).
- CSRF: each web session has its own token, derived from the session's secret (so nothing more is
  stored, and it dies with the session), sent back in a hidden field or the X-CSRF-Token header
  and compared in constant time. The sign-in form, which has no session yet, uses a random
  double-submit cookie instead. Requests a browser marks `Sec-Fetch-Site: cross-site` or
  `same-site` are refused outright: shared ports' origins under the broker's own domain
  (`*.apps.pair.example.com` beside `pair.example.com`) are same-site, so SameSite cookies
  alone would not keep an app's pages from posting to the broker as its visitor.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from broker.errors import Problem

SESSION_COOKIE = "pair_session"
SIGNIN_COOKIE = "pair_signin"  # the sign-in form's double-submit CSRF value
FLASH_COOKIE = "pair_flash"
ONCE_COOKIE = "pair_once"  # a new auth key for the next page to show once, sealed
ONCE_MAX_AGE = 60  # seconds: the redirect's GET follows at once
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
MAX_FORM = 16 * 1024
MAX_FIELDS = 1024  # a create form has a checkbox per teammate; MAX_FORM bounds them first


def csp(style_nonce: str = "", form_target: str = "") -> str:
    """The Content-Security-Policy. `style_nonce` also admits `<style>` elements carrying that
    nonce: the terminal page needs it, because xterm.js (6.0) sizes its rows and colours through
    `<style>` elements it creates (xtermjs/xterm.js#4445); terminal.js stamps the page's nonce on
    them. Scripts stay 'self' only, and style attributes stay refused. `form_target` (a CSP
    source such as `https://*.apps.example.com`) is where a form may also end up: the sign-in
    for a shared app redirects there, and browsers hold redirects to `form-action` too."""
    styles = f"style-src 'self' 'nonce-{style_nonce}'" if style_nonce else "style-src 'self'"
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            styles,
            "img-src 'self' data:",
            "connect-src 'self'",
            f"form-action 'self' {form_target}".rstrip(),
            "base-uri 'none'",
            "object-src 'none'",
            "frame-ancestors 'none'",
        )
    )


CSP = csp()
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def is_secure(request: HTTPConnection) -> bool:
    return request.url.scheme == "https" or request.app.ctx.settings.url.startswith("https://")


def harden(request: Request, response: Response, *, page: bool = True, style_nonce: str = "") -> Response:
    """Set the security headers; `style_nonce` is the terminal page's (see `csp`), and a
    handler's `request.state.form_target` widens `form-action` for its page."""
    response.headers.update(HEADERS)
    form_target = getattr(request.state, "form_target", "")
    if style_nonce or form_target:
        response.headers["Content-Security-Policy"] = csp(style_nonce, form_target)
    if page:
        response.headers["Cache-Control"] = "no-store"
    if request.url.scheme == "https":
        response.headers["Strict-Transport-Security"] = "max-age=31536000"
    return response


class StaticHeaders:
    """Wraps the static-file app so its answers carry the same headers as the pages."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
                headers.append((b"cache-control", b"public, max-age=300"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


# -- cookies --------------------------------------------------------------------------------


HOST_PREFIX = "__Host-"


def cookie_name(request: HTTPConnection, name: str) -> str:
    """The name a broker cookie has on the wire: `__Host-NAME` on https, so a browser accepts it
    only host-only, Secure and Path=/, and no other origin (an app under the broker's domain)
    can set one the broker would read (RFC 6265bis §4.1.3.2); plain NAME on http."""
    return HOST_PREFIX + name if is_secure(request) else name


def cookie_values(request: HTTPConnection, name: str) -> list[str]:
    """Every value the Cookie field gives cookie `name` (its wire name), in the order sent."""
    values = []
    for field in request.headers.getlist("cookie"):
        for part in field.split(";"):
            key, eq, value = part.strip().partition("=")
            if eq and key == name:
                values.append(value.strip().strip('"'))
    return values


def read_cookie(request: HTTPConnection, name: str) -> str:
    """Broker cookie `name`'s value, or "" if absent or sent more than once: a second copy is one
    another origin under the same domain set (`Domain=` the broker's parent, over http, where
    the `__Host-` prefix is not available), and a browser gives no way to tell which is ours."""
    values = cookie_values(request, cookie_name(request, name))
    return values[0] if len(values) == 1 else ""


def tossed(request: Request, name: str) -> bool:
    """Whether the browser sent cookie `name` more than once (see `read_cookie`)."""
    return len(cookie_values(request, cookie_name(request, name))) > 1


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    """Set broker cookie `name`: HttpOnly, SameSite=Lax, Path=/, host-only; Secure and
    `__Host-` prefixed on https (`cookie_name`). Copies of it that another origin set for a
    parent domain (`tossed`) are deleted in the same answer."""
    if tossed(request, name):
        clear_tossed(request, response, name)
    response.set_cookie(
        cookie_name(request, name),
        value,
        max_age=max_age,
        path="/",
        secure=is_secure(request),
        httponly=True,
        samesite="lax",
    )


def clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(
        cookie_name(request, name), path="/", secure=is_secure(request), httponly=True, samesite="lax"
    )


def clear_tossed(request: Request, response: Response, name: str) -> None:
    """Delete copies of cookie `name` set with `Domain=` the broker's host or a parent of it
    (browsers ignore the public suffixes among them)."""
    labels = (request.url.hostname or "").split(".")
    for start in range(len(labels) - 1):
        domain = ".".join(labels[start:])
        response.delete_cookie(cookie_name(request, name), path="/", domain=domain, secure=is_secure(request))


# -- CSRF -----------------------------------------------------------------------------------


def _derive(secret: str, purpose: bytes) -> str:
    return hmac.new(secret.encode(), purpose, hashlib.sha256).hexdigest()


def csrf_token(session_token: str) -> str:
    """The session's CSRF token: unguessable without the (HttpOnly) session cookie."""
    return _derive(session_token, b"pair web csrf v1")


def same_token(sent: str, expected: str) -> bool:
    return bool(sent) and bool(expected) and hmac.compare_digest(sent.encode(), expected.encode())


def refused() -> Problem:
    return Problem(
        403,
        "This request was refused: it did not carry this page's security token.",
        "Reload the page and try again.",
        "csrf",
    )


FOREIGN_SITES = frozenset({"cross-site", "same-site"})  # Fetch Metadata: not the broker's own origin


def check_origin(request: Request) -> None:
    """Refuse a state change a browser says comes from another origin: another site, or a
    sibling origin of the same site (a shared port's app), by Fetch Metadata first; then, the
    second line, an `Origin` that names another origin than the broker's own (`own_origins`).
    `Origin: null` is let through to the CSRF token: the broker's pages are `Referrer-Policy:
    no-referrer`, under which browsers send `null` on the pages' own form posts (Fetch,
    "serializing a request origin"), and over http to a name other than localhost they send no
    Fetch Metadata either (not a secure context), so refusing `null` would refuse every sign-in
    there. Browsers sending neither are held by the CSRF token alone."""
    if request.headers.get("sec-fetch-site") in FOREIGN_SITES:
        raise refused()
    origin = (request.headers.get("origin") or "null").strip().lower()
    if origin != "null" and origin not in own_origins(request):
        raise refused()


def own_origins(request: Request) -> set[str]:
    """The broker's own origins as `scheme://host[:port]`, lowercase: its public URL's, and the
    scheme and Host of this request (the same server to the browser, e.g. 127.0.0.1 for localhost)."""
    public = urlsplit(request.app.ctx.settings.url)
    own = {f"{public.scheme}://{public.netloc}".lower()}
    host = request.headers.get("host")
    if host:
        own.add(f"{request.url.scheme}://{host}".lower())
    return own


def check_csrf(request: Request, form: dict[str, str], expected: str) -> None:
    check_origin(request)
    sent = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD, "")
    if not same_token(sent, expected):
        raise refused()


def new_nonce() -> str:
    return secrets.token_urlsafe(32)


# -- forms ----------------------------------------------------------------------------------


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded body (all our forms and fetches send one), without python-multipart; the
    last value of a repeated field wins."""
    return dict(await read_form_pairs(request))


async def read_form_pairs(request: Request) -> list[tuple[str, str]]:
    """An urlencoded body as (name, value) pairs in order, repeated fields (checkboxes) included."""
    raw = await request.body()
    if len(raw) > MAX_FORM:
        raise Problem(413, "The form is too large.", code="too_large")
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if raw and kind != "application/x-www-form-urlencoded":
        raise Problem(415, "Send the form as application/x-www-form-urlencoded.", code="unsupported_media_type")
    try:
        return parse_qsl(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Problem(400, "The form could not be read.", code="bad_form") from exc


# -- flash messages (after a redirect) ------------------------------------------------------


def encode_flash(session_token: str, kind: str, text: str) -> str:
    """A message for the next page, signed with a key derived from the session, so nothing but
    this broker (for this browser's session) can put words on the page."""
    body = base64.urlsafe_b64encode(json.dumps([kind, text]).encode()).decode().rstrip("=")
    return f"{body}.{_derive(session_token, b'pair web flash v1:' + body.encode())}"


def decode_flash(session_token: str, value: str) -> dict[str, Any] | None:
    body, _, mac = value.partition(".")
    if not same_token(mac, _derive(session_token, b"pair web flash v1:" + body.encode())):
        return None
    try:
        kind, text = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, TypeError):
        return None
    if kind not in ("ok", "error") or not isinstance(text, str):
        return None
    return {"kind": kind, "text": text}


# -- a secret shown once (after a redirect) ---------------------------------------------------

_SEAL_PURPOSE = b"pair web secret once v1"


def _seal_key(session_token: str) -> bytes:
    return hmac.new(session_token.encode(), _SEAL_PURPOSE, hashlib.sha256).digest()


def seal_secret(session_token: str, secret: str) -> str:
    """`secret` (a new auth key) for the page after a POST's redirect, as a cookie value: sealed
    with AES-256-GCM (RFC 5116) under a key derived from the session, so only this broker, for
    this browser's session, can open it, and nothing it passes through (a proxy's log, the
    browser's cookie file) holds it readable. The page that shows it deletes the cookie (one
    time); it never travels in a URL, where history and logs would keep it."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = secrets.token_bytes(12)
    sealed = AESGCM(_seal_key(session_token)).encrypt(nonce, secret.encode(), _SEAL_PURPOSE)
    return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")


def open_secret(session_token: str, value: str) -> str | None:
    """What `seal_secret` sealed for this session; None for anything else (another session's,
    altered, or not a sealed value at all)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        opened = AESGCM(_seal_key(session_token)).decrypt(raw[:12], raw[12:], _SEAL_PURPOSE)
        return opened.decode()
    except (InvalidTag, ValueError):  # binascii.Error and UnicodeDecodeError are ValueErrors
        return None
