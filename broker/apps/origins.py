"""Whether a request to an app origin comes from that origin, in one place (cross-app forgery).

App origins are *same-site* with each other (`*.apps.example.com`), so SameSite cookies do not
keep one app's pages (another person's public port, say) from sending the visitor's app cookie
to another app: a WebSocket, a no-cors POST, an `<img>`. A WebSocket is not even held by CORS.
For every level but `public`, the gate therefore lets through only:

- requests the browser marks `Sec-Fetch-Site: same-origin` or `none` (typed, bookmarked,
  opened by a program), or that carry no Fetch Metadata (older browsers, non-browser clients);
- from another site or a sibling origin (`cross-site`, `same-site`), only top-level GET/HEAD
  navigations of a document (following a link, the sign-in hand-off's redirects): never a
  subresource, a frame, a fetch, a form POST or a WebSocket;
- and, the second line for browsers without Fetch Metadata (older ones, and every browser over
  http to a name other than localhost, which is not a secure context): a WebSocket or a request
  other than GET/HEAD whose `Origin` is present must name the app's own origin (`null` is
  refused: a page can make its own requests carry it with `Referrer-Policy: no-referrer`).

This follows Fetch Metadata's resource isolation policy (https://web.dev/articles/fetch-metadata)
with the navigation allowance, and the WebSocket Origin check of RFC 6455 §10.2.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

FOREIGN_SITES = frozenset({"cross-site", "same-site"})
SAFE_METHODS = frozenset({"GET", "HEAD"})
REFUSAL = (
    "This request came from another site or another app's page, which may not use your access to this app. "
    "Open the app's address yourself."
)


def foreign_request(headers: Mapping[str, str], *, method: str, websocket: bool, own_origins: Collection[str]) -> bool:
    """True if a request must be refused as coming from another origin (see the module docstring).

    `headers`: the request's header fields, names lowercase (only sec-fetch-site/-mode/-dest and
    origin are read); `method`: the HTTP method (GET for a WebSocket handshake); `own_origins`:
    the app's own origin(s) as `scheme://host[:port]`, lowercase."""
    site = headers.get("sec-fetch-site", "").strip().lower()
    origin = headers.get("origin")
    if site == "same-origin":  # the browser vouches; Origin is `null` under a no-referrer page
        return False
    if site in FOREIGN_SITES:
        navigation = (
            not websocket
            and method.upper() in SAFE_METHODS
            and headers.get("sec-fetch-mode", "").strip().lower() == "navigate"
            and headers.get("sec-fetch-dest", "").strip().lower() == "document"
        )
        if not navigation:
            return True
    if origin is not None and (websocket or method.upper() not in SAFE_METHODS):
        return origin.strip().lower() not in own_origins
    return False
