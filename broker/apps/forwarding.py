"""What the app proxy changes in the headers it forwards, in one place, for HTTP and WebSockets.

Requests (browser → app):
- Hop-by-hop fields go (RFC 9110 §7.6.1): Connection and every field it names, Keep-Alive,
  Proxy-Connection and every `Proxy-*`, TE, Trailer, Transfer-Encoding, Upgrade. The body's
  framing (Content-Length or chunked) is decided from the original fields and set again by the
  proxy, so a `Connection: content-length` cannot unframe a body. `Expect` goes too: the ASGI
  server already answered `100-continue`.
- `Host` becomes `localhost:PORT` (`preserve_host=False`, the default): what the app sees when
  its developer opens it locally, which dev servers' DNS-rebinding checks accept out of the box
  (Vite's `server.allowedHosts`, webpack-dev-server's `allowedHosts: 'auto'`, Django's DEBUG
  hosts, Rails' development hosts). The public host travels in `X-Forwarded-Host` and
  `Forwarded: host=`, and `Location` answers that point at `http://localhost:PORT` or
  `http://127.0.0.1:PORT` are rewritten to the app's public origin (nginx's `proxy_redirect
  default`). `preserve_host=True` forwards the browser's Host instead.
- `X-Forwarded-For/-Proto/-Host` and `Forwarded` (RFC 7239) are set from what the broker knows;
  whatever the browser sent under those names (and `X-Forwarded-Port/-Prefix`, `X-Real-IP`) is
  dropped, so an app that trusts its proxy cannot be lied to.
- Broker credentials never leave: the cookies named in `credential_cookies` are cut out of
  `Cookie`, and an `Authorization` whose credentials start with one of
  `authorization_prefixes` (the broker's own token prefixes) is dropped.

Responses (app → browser): hop-by-hop fields go, and `Date` (the ASGI server writes its own, and
two would contradict each other); `Set-Cookie` loses any `Domain` attribute (so an
app cannot plant cookies on its sibling app origins) and is dropped outright for a credential
cookie name (an app cannot shadow the proxy's own cookie).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Headers = list[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade"}
)
# Set by the proxy from what it knows; never passed on from the browser.
FORWARDING = frozenset(
    {
        b"forwarded",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-port",
        b"x-forwarded-prefix",
        b"x-real-ip",
    }
)
REQUEST_REPLACED = frozenset({b"host", b"content-length", b"expect"})
# The opening handshake's own fields: wsproto writes the ones it needs (RFC 6455 §4.1, §4.2.2).
WEBSOCKET_HANDSHAKE = frozenset(
    {
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
        b"sec-websocket-accept",
    }
)
TOKEN_RE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 §5.6.2


@dataclass(frozen=True)
class ProxyOptions:
    """How the app proxy behaves; one instance serves every app.

    Times are seconds; sizes bytes. `credential_cookies` are cookie names (case-sensitive, as
    RFC 6265 compares them): the broker's session cookies and the app-origin credential's
    (broker.apps.auth.COOKIE_NAMES)."""

    credential_cookies: frozenset[str] = frozenset()
    authorization_prefixes: tuple[str, ...] = ()
    preserve_host: bool = False
    connect_timeout: float = 10.0  # to open the stream
    response_timeout: float = 120.0  # for the response head (dev servers compile on first load)
    chunk_size: int = 64 * 1024  # one read from the stream
    max_head_bytes: int = 64 * 1024  # the app's response line and headers
    max_message_bytes: int = 16 * 1024 * 1024  # one WebSocket message from the app (uvicorn's ws_max_size)
    max_denial_body: int = 64 * 1024  # the body of an app's refusal of a WebSocket upgrade
    close_timeout: float = 2.0  # for the app's answer to our WebSocket close
    _credential_bytes: frozenset[bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_credential_bytes", frozenset(n.encode("latin-1") for n in self.credential_cookies))

    def is_credential_cookie(self, name: bytes) -> bool:
        return name in self._credential_bytes


# -- requests -------------------------------------------------------------------------------


def connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    """The field names listed in every Connection field, lowercased (RFC 9110 §7.6.1)."""
    names: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            names.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return names


def body_framing(headers: Iterable[tuple[bytes, bytes]]) -> int | str | None:
    """How the browser framed the request body: its Content-Length, "chunked" when it sent a
    Transfer-Encoding, or None: no body (RFC 9112 §6.3: a request with neither has none)."""
    length: int | None = None
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"transfer-encoding":
            return "chunked"
        if lowered == b"content-length":
            length = int(value)  # the ASGI server has validated it
    return length


def header(headers: Iterable[tuple[bytes, bytes]], wanted: bytes) -> bytes | None:
    for name, value in headers:
        if name.lower() == wanted:
            return value
    return None


def public_host(scope: Mapping[str, Any]) -> bytes:
    """The Host the browser asked for (`name[:port]`), or the server's address without one."""
    host = header(scope["headers"], b"host")
    if host:
        return host
    server = scope.get("server")
    return f"{server[0]}:{server[1]}".encode() if server else b"localhost"


def public_scheme(scope: Mapping[str, Any]) -> str:
    """http or https, for an `http` or `websocket` scope."""
    scheme = str(scope.get("scheme", "http"))
    return {"ws": "http", "wss": "https"}.get(scheme, scheme)


def upstream_headers(scope: Mapping[str, Any], port: int, options: ProxyOptions, *, websocket: bool = False) -> Headers:
    """The fields to send the app, Host first, without the body's framing (the caller adds it).

    `scope`: an ASGI http or websocket scope (its `headers`, `client`, `scheme`, `server`)."""
    incoming: Headers = scope["headers"]
    drop = HOP_BY_HOP | FORWARDING | REQUEST_REPLACED | connection_tokens(incoming)
    if websocket:
        drop |= WEBSOCKET_HANDSHAKE
    browser_host = public_host(scope)
    host = browser_host if options.preserve_host else b"localhost:%d" % port
    out: Headers = [(b"host", host)]
    for raw_name, value in incoming:
        name = raw_name.lower()
        if name in drop or name.startswith(b"proxy-"):
            continue
        if name == b"cookie":
            kept = strip_cookies(value, options)
            if kept:
                out.append((b"cookie", kept))
            continue
        if name == b"authorization" and _is_broker_authorization(value, options.authorization_prefixes):
            continue
        out.append((name, value))
    out += forwarding_headers(scope, browser_host)
    return out


def strip_cookies(value: bytes, options: ProxyOptions) -> bytes:
    """A Cookie field without the credential cookies (RFC 6265 §5.4: `name=value; name=value`)."""
    pairs = [p.strip() for p in value.split(b";")]
    kept = [p for p in pairs if p and not options.is_credential_cookie(p.partition(b"=")[0].strip())]
    return b"; ".join(kept)


def _is_broker_authorization(value: bytes, prefixes: tuple[str, ...]) -> bool:
    credentials = value.strip().partition(b" ")[2].strip()
    return any(credentials.startswith(p.encode()) for p in prefixes)


def forwarding_headers(scope: Mapping[str, Any], browser_host: bytes) -> Headers:
    """X-Forwarded-For/-Proto/-Host and their RFC 7239 `Forwarded` equivalent."""
    client = scope.get("client")
    proto = public_scheme(scope).encode()
    out: Headers = []
    parts = []
    if client:
        address = str(client[0]).encode()
        out.append((b"x-forwarded-for", address))
        # RFC 7239 §6: an IPv6 address is bracketed, and then quoted like any non-token value.
        parts.append(b"for=" + _forwarded_value(b"[" + address + b"]" if b":" in address else address))
    out.append((b"x-forwarded-proto", proto))
    out.append((b"x-forwarded-host", browser_host))
    parts += [b"host=" + _forwarded_value(browser_host), b"proto=" + proto]
    out.append((b"forwarded", b";".join(parts)))
    return out


def _forwarded_value(value: bytes) -> bytes:
    if TOKEN_RE.fullmatch(value):
        return value
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


# -- responses ------------------------------------------------------------------------------


def downstream_headers(
    headers: Iterable[tuple[bytes, bytes]], *, port: int, origin: bytes, options: ProxyOptions
) -> Headers:
    """The app's response fields as the browser gets them (see the module docstring).

    `origin`: the app's public origin, `scheme://host[:port]`, for rewriting Location."""
    headers = list(headers)
    drop = HOP_BY_HOP | connection_tokens(headers) | {b"date"}  # the ASGI server writes its own Date
    local = (b"http://localhost:%d" % port, b"http://127.0.0.1:%d" % port)
    out: Headers = []
    for raw_name, value in headers:
        name = raw_name.lower()
        if name in drop or name.startswith(b"proxy-"):
            continue
        if name == b"set-cookie":
            cookie = _own_cookie(value, options)
            if cookie is not None:
                out.append((name, cookie))
            continue
        if name in (b"location", b"content-location") and not options.preserve_host:
            value = _rebase(value, local, origin)
        out.append((name, value))
    return out


def _rebase(url: bytes, local: tuple[bytes, ...], origin: bytes) -> bytes:
    for prefix in local:
        if url.lower().startswith(prefix) and url[len(prefix) : len(prefix) + 1] in (b"", b"/", b"?", b"#"):
            return origin + url[len(prefix) :]
    return url


def _own_cookie(value: bytes, options: ProxyOptions) -> bytes | None:
    """A Set-Cookie value without a Domain attribute (RFC 6265 §5.2.3: host-only), or None for a
    credential cookie's name."""
    pair, *attributes = value.split(b";")
    if options.is_credential_cookie(pair.partition(b"=")[0].strip()):
        return None
    kept = [a for a in attributes if a.strip().partition(b"=")[0].strip().lower() != b"domain"]
    return b";".join([pair, *kept])


# -- the proxy's own answers ----------------------------------------------------------------

REASONS = {400: "Bad Request", 404: "Not Found", 502: "Bad Gateway", 504: "Gateway Timeout"}


def error_page(status: int, title: str, detail: str) -> tuple[Headers, bytes]:
    """A small HTML page for the proxy's own errors; all text is escaped."""
    body = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{status} {html.escape(title)}</title></head>\n"
        f"<body><h1>{html.escape(title)}</h1>\n<p>{html.escape(detail)}</p>\n"
        f"<p><small>{status} {REASONS.get(status, '')} · pair</small></p></body></html>\n"
    ).encode()
    headers = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
        (b"content-security-policy", b"default-src 'none'"),
    ]
    return headers, body
