"""Building the API client for a command: the signed-in session, or an explicit URL."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from pair import config
from pair.api.client import Client
from pair.api.errors import PairError

# Tests point this at the in-process broker (Starlette's TestClient is an httpx.Client).
http_factory: Callable[[str], httpx.Client] | None = None


def client_for(url: str, token: str | None = None) -> Client:
    http = http_factory(url) if http_factory else None
    return Client(url, token=token, http=http)


def signed_in() -> tuple[Client, config.Session]:
    session = config.load_session()
    if session is None:
        raise PairError("You are not logged in.", config.LOGIN_HINT)
    url = config.broker_url() or session.url
    if url != session.url:
        raise PairError(
            f"You are logged in to {session.url}, not {url} (PAIR_URL).",
            f"Unset PAIR_URL, or log in to {url}. {config.LOGIN_HINT}",
        )
    return client_for(session.url, session.token), session
