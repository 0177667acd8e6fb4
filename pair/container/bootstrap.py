"""`pair spaces bootstrap`: turn this container into a Space, once; afterwards, confirm quickly.

postAttachCommand runs this on every attach, long after the one-hour token expired, so a
container that already holds an agent credential checks in with that and ignores the token.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from pair.api.client import Client
from pair.api.errors import ApiError, AuthError, BrokerUnreachable, PairError
from pair.api.models import AgentRegistration
from pair.api.tokens import unverified_claims
from pair.container import facts
from pair.container.home import Home, Registration

WHERE_FROM_HINT = (
    "Pass the contents of SPACE_ID.txt as `pair spaces bootstrap TOKEN`, set PAIR_SPACE_TOKEN "
    "(e.g. a Codespaces secret), or install with the Feature's `token` option."
)


@dataclass
class Outcome:
    registration: Registration
    reused: bool


def find_token(argument: str | None, home: Home) -> tuple[str, str]:
    """(token, where it came from): the argument, then PAIR_SPACE_TOKEN, then bootstrap.txt."""
    for token, source in (
        (argument, "the command line"),
        (os.environ.get("PAIR_SPACE_TOKEN"), "PAIR_SPACE_TOKEN"),
        (home.stored_token(), str(home.bootstrap_token_file)),
    ):
        if token and token.strip():
            return token.strip(), source
    return "", ""


def bootstrap(
    argument: str | None,
    *,
    home: Home | None = None,
    timeout: float = 120.0,
) -> Outcome:
    home = home or Home()
    home.ensure()
    instance_id = home.instance_id()  # persisted before any call, so a retry is recognised
    found = facts.collect(home.host_key_file, ssh_user_file=home.ssh_user_file)
    token, _source = find_token(argument, home)
    claims = unverified_claims(token) if token else {}

    stored = home.registration()
    if stored and (not token or claims.get("sub") == stored.space_id):
        try:
            with Client(home.broker_url_override() or stored.url, token=stored.credential, timeout=15) as client:
                answer = _retrying(lambda: client.checkin(instance_id, found), timeout)
            _forget_token(home)
            return Outcome(_registration(stored.url, answer, stored.credential), reused=True)
        except AuthError:
            if not token:
                raise
            # The credential died (Space re-bootstrapped elsewhere or deleted); try the token.

    if not token:
        raise PairError("No Space token, and this container is not bootstrapped yet.", WHERE_FROM_HINT)
    url = home.broker_url_override() or str(claims.get("iss") or "")
    if not url.startswith(("http://", "https://")):
        raise PairError(
            "The Space token names no broker URL (its `iss` claim).",
            "Set PAIR_URL to the broker's URL, or issue a new token with `pair spaces authorize`.",
        )
    with Client(url, timeout=15) as client:
        answer = _retrying(lambda: client.bootstrap(token, instance_id, found), timeout)
    registration = _registration(url, answer, answer.agent_credential)
    home.save_registration(registration)
    _forget_token(home)
    return Outcome(registration, reused=False)


def _registration(url: str, answer: AgentRegistration, credential: str) -> Registration:
    return Registration(url=url, space_id=answer.space_id, space_name=answer.space_name, credential=credential)


def _forget_token(home: Home) -> None:
    # The Feature left the token on disk for the first bootstrap; it is not needed any more.
    home.bootstrap_token_file.unlink(missing_ok=True)


def _retrying(call: Callable[[], AgentRegistration], timeout: float) -> AgentRegistration:
    """Retry while the broker is away or overloaded (exponential backoff with jitter), up to `timeout`."""
    deadline = time.monotonic() + timeout
    delay = 0.5
    while True:
        try:
            return call()
        except (BrokerUnreachable, ApiError) as exc:
            transient = isinstance(exc, BrokerUnreachable) or exc.status in (429, 502, 503, 504)
            remaining = deadline - time.monotonic()
            if not transient or remaining <= 0:
                if transient:
                    raise PairError(
                        f"{exc.message} Gave up after {timeout:.0f} s.",
                        "Check that the broker is running and reachable from this container; "
                        "bootstrap again when it is (it is safe to re-run).",
                    ) from exc
                raise
            time.sleep(min(delay * random.uniform(0.5, 1.0), remaining))  # noqa: S311 - jitter, not secrets
            delay = min(delay * 2, 8.0)
