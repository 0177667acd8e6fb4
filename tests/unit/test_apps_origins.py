"""broker.apps.origins.foreign_request, the one place deciding whether a request to an app
origin comes from another origin (cross-app request forgery, issue 12's security review)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from broker.apps.origins import foreign_request

OWN = "http://8080--demo--alice.apps.example.com:8000"
OTHER = "http://9999--demo--carol.apps.example.com:8000"
SITES = st.sampled_from(["same-origin", "none", "same-site", "cross-site", None])
MODES = st.sampled_from(["navigate", "cors", "no-cors", "websocket", "same-origin", None])
DESTS = st.sampled_from(["document", "iframe", "image", "empty", "script", None])
METHODS = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
ORIGINS = st.sampled_from([OWN, OWN.upper(), OTHER, "null", "https://evil.example", None])


def headers(**fields: str | None) -> dict[str, str]:
    return {name.replace("_", "-"): value for name, value in fields.items() if value is not None}


@given(site=SITES, mode=MODES, dest=DESTS, method=METHODS, origin=ORIGINS, websocket=st.booleans())
def test_only_own_origin_or_top_level_navigations_pass(
    site: str | None, mode: str | None, dest: str | None, method: str, origin: str | None, websocket: bool
) -> None:
    fields = headers(sec_fetch_site=site, sec_fetch_mode=mode, sec_fetch_dest=dest, origin=origin)
    refused = foreign_request(fields, method=method, websocket=websocket, own_origins={OWN.lower()})
    if site in ("same-site", "cross-site") and (websocket or mode != "navigate" or dest != "document"):
        assert refused  # from another origin: nothing but a top-level document navigation
    if (
        site != "same-origin"
        and origin in (OTHER, "null", "https://evil.example")
        and (websocket or method not in ("GET", "HEAD"))
    ):
        assert refused  # the second line, for browsers without Fetch Metadata
    if site == "same-origin" or (site in ("none", None) and origin in (OWN, OWN.upper(), None)):
        assert not refused  # the app's own pages, typed addresses and non-browser clients
    if not websocket and method in ("GET", "HEAD") and mode == "navigate" and dest == "document":
        assert not refused or origin not in (OWN, OWN.upper(), None)  # links from anywhere open the app


def test_the_attacks_seen() -> None:
    own = {OWN.lower()}
    # a sibling app's page opening a WebSocket, and its no-cors POST
    ws = headers(sec_fetch_site="same-site", sec_fetch_mode="websocket", sec_fetch_dest="empty", origin=OTHER)
    assert foreign_request(ws, method="GET", websocket=True, own_origins=own)
    post = headers(sec_fetch_site="same-site", sec_fetch_mode="no-cors", sec_fetch_dest="empty", origin=OTHER)
    assert foreign_request(post, method="POST", websocket=False, own_origins=own)
    # a browser without Fetch Metadata still sends Origin on a WebSocket: `null` is not the app
    assert foreign_request({"origin": "null"}, method="GET", websocket=True, own_origins=own)
    # the app's own page, a link followed from another site, and curl all pass
    mine = headers(sec_fetch_site="same-origin", sec_fetch_mode="websocket", origin=OWN)
    assert not foreign_request(mine, method="GET", websocket=True, own_origins=own)
    link = headers(sec_fetch_site="cross-site", sec_fetch_mode="navigate", sec_fetch_dest="document")
    assert not foreign_request(link, method="GET", websocket=False, own_origins=own)
    assert not foreign_request({}, method="POST", websocket=False, own_origins=own)
