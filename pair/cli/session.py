"""The API client for a command that needs the signed-in session."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pair import config
from pair.api.errors import PairError, login_hint

if TYPE_CHECKING:
    from pair.api.client import Client


def signed_in() -> tuple[Client, config.Session]:
    from pair.api.client import Client  # httpx loads only when a command talks to the broker

    session = config.load_session()
    if session is None:
        raise PairError("You are not logged in.", login_hint(config.broker_url() or ""))
    url = config.broker_url() or session.url
    if url != session.url:
        raise PairError(
            f"You are logged in to {session.url}, not {url} (PAIR_URL).",
            f"Unset PAIR_URL, or log in to {url}. {login_hint(url)}",
        )
    return Client(session.url, token=session.token), session
