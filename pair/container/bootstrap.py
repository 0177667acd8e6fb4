"""`pair spaces bootstrap`: turn this container into a Space, once; afterwards, confirm quickly.

postAttachCommand runs this on every attach, long after the one-hour token expired, so a
container that already holds an agent credential checks in with that and ignores the token.

With a reusable Space key instead of a token (`--key`, PAIR_SPACE_KEY, or $PAIR_HOME/space-key
from install.sh --space-key), the container registers itself as its own Space, named after the
container (pair.container.facts.container_name); once registered it keeps the agent credential,
never the key (the space-key file is removed as bootstrap.txt is).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from pair.api.client import Client
from pair.api.errors import ApiError, AuthError, BrokerUnreachable, PairError
from pair.api.models import AgentRegistration, ContainerFacts
from pair.api.tokens import SPACE_KEY, SPACE_TOKEN, normalize, space_key_broker, unverified_claims
from pair.container import facts
from pair.container.home import Home, Registration

WHERE_FROM_HINT = (
    "Pass the contents of SPACE_ID.txt as `pair spaces bootstrap TOKEN`, set PAIR_SPACE_TOKEN, or give a "
    "reusable Space key as PAIR_SPACE_KEY (e.g. a Codespaces secret) or `pair spaces bootstrap --key KEY`."
)


@dataclass
class Outcome:
    registration: Registration
    reused: bool


@dataclass(frozen=True)
class FoundToken:
    token: str  # normalized (pair.api.tokens)
    source: str  # where it came from, as messages name it
    claims: dict[str, object]


@dataclass(frozen=True)
class FoundKey:
    key: str  # normalized (pair.api.tokens.SPACE_KEY)
    source: str


def find_secret(argument: str | None, key_argument: str | None, home: Home) -> FoundToken | FoundKey | None:
    """What to bootstrap with: the token argument, else `--key`, else PAIR_SPACE_TOKEN, else
    PAIR_SPACE_KEY, else bootstrap.txt, else the space-key file; each normalized, and each looked
    at only if the ones before it are absent or blank. Raises SecretError for a source that holds
    something else."""
    if argument is not None and argument.strip():
        return _found(argument, "the command line")
    if key_argument is not None and key_argument.strip():
        return _found_key(key_argument, "--key")
    variable = os.environ.get("PAIR_SPACE_TOKEN", "")
    if variable.strip():
        return _found(variable, "PAIR_SPACE_TOKEN")
    key_variable = os.environ.get("PAIR_SPACE_KEY", "")
    if key_variable.strip():
        return _found_key(key_variable, "PAIR_SPACE_KEY")
    found = find_token(None, home, environment=False)
    if found is not None:
        return found
    stored = home.stored_key()
    if stored is not None and stored.strip(b" \t\r\n\x00"):
        return _found_key(stored, str(home.space_key_file))
    return None


def _found_key(pasted: str | bytes, source: str) -> FoundKey:
    return FoundKey(normalize(pasted, SPACE_KEY, source=source), source)


def find_token(argument: str | None, home: Home, *, environment: bool = True) -> FoundToken | None:
    """The token from the argument, else PAIR_SPACE_TOKEN, else bootstrap.txt, normalized.

    Each source is looked at only if the ones before it are absent or blank, so a bootstrap.txt
    nobody needs is never read. Raises SecretError (naming the source and the cause) for a
    source that holds something other than a token.
    """
    if argument is not None and argument.strip():
        return _found(argument, "the command line")
    variable = os.environ.get("PAIR_SPACE_TOKEN", "") if environment else ""
    if variable.strip():
        return _found(variable, "PAIR_SPACE_TOKEN")
    stored = home.stored_token()
    if stored is not None and stored.strip(b" \t\r\n\x00"):
        return _found(stored, str(home.bootstrap_token_file))
    return None


def _no_token(argument: str | None, key_argument: str | None, home: Home) -> PairError:
    """Say which sources were looked at and what each held; never suggest what was just run."""
    looked = [
        "no argument" if argument is None else "the argument is empty",
        *(["--key is empty"] if key_argument is not None else []),
        "PAIR_SPACE_TOKEN is empty" if "PAIR_SPACE_TOKEN" in os.environ else "PAIR_SPACE_TOKEN is not set",
        "PAIR_SPACE_KEY is empty" if "PAIR_SPACE_KEY" in os.environ else "PAIR_SPACE_KEY is not set",
        f"{home.bootstrap_token_file} is empty"
        if home.bootstrap_token_file.exists()
        else f"there is no {home.bootstrap_token_file}",
    ]
    hint = WHERE_FROM_HINT
    if argument is not None or key_argument is not None:
        hint = (
            "Whatever gave the argument was empty (an empty SPACE_ID.txt? an unset variable?). "
            "`pair spaces authorize` on your laptop writes the token to SPACE_ID.txt, one line."
        )
    return PairError(f"No Space token or key, and this container is not bootstrapped yet ({', '.join(looked)}).", hint)


def _found(pasted: str | bytes, source: str) -> FoundToken:
    token = normalize(pasted, SPACE_TOKEN, source=source)
    return FoundToken(token, source, unverified_claims(token))


def bootstrap(
    argument: str | None,
    *,
    key: str | None = None,
    home: Home | None = None,
    timeout: float = 120.0,
    on_wait: Callable[[], None] = lambda: None,
) -> Outcome:
    """Register this container as the token's Space, or check in with the credential it holds.

    Bootstraps started at once in one container (several windows attaching) take turns under
    the container's bootstrap lock: the first exchanges the token, the others find its
    registration and check in with it, so the token is spent once and the credential saved is
    the one the broker holds. `on_wait` is called when another bootstrap holds the lock.
    Raises PairError (SecretError for a pasted token that is not one).
    """
    home = home or Home()
    home.ensure()
    given = find_secret(argument, key, home)
    with home.bootstrap_lock(on_wait):
        outcome = _bootstrap_locked(home, given, timeout)
    if outcome is None:
        raise _no_token(argument, key, home)
    return outcome


def _bootstrap_locked(home: Home, given: FoundToken | FoundKey | None, timeout: float) -> Outcome | None:
    instance_id = home.instance_id()  # persisted before any call, so a retry is recognised
    found = facts.collect(home.host_key_file, ssh_user_file=home.ssh_user_file)
    stored = home.registration()
    # A key registers this container once; a token for another Space moves it there.
    if stored and (given is None or isinstance(given, FoundKey) or given.claims.get("sub") == stored.space_id):
        try:
            with Client(home.broker_url_override() or stored.url, token=stored.credential, timeout=15) as client:
                answer = _retrying(lambda: client.checkin(instance_id, found), timeout)
            _forget_token(home)
            return Outcome(_registration(stored.url, answer, stored.credential), reused=True)
        except AuthError:
            if given is None:
                raise
            # The credential died (Space re-bootstrapped elsewhere or deleted); try the token.

    if given is None:
        return None
    if isinstance(given, FoundKey):
        return _register_with_key(home, given, instance_id, found, timeout)
    url = home.broker_url_override() or str(given.claims.get("iss") or "")
    if not url.startswith(("http://", "https://")):
        raise PairError(
            "The Space token names no broker URL (its `iss` claim).",
            "Set PAIR_URL to the broker's URL, or issue a new token with `pair spaces authorize`.",
        )
    token = given.token
    with Client(url, timeout=15) as client:
        answer = _retrying(lambda: client.bootstrap(token, instance_id, found), timeout)
    registration = _registration(url, answer, answer.agent_credential)
    home.save_registration(registration)
    _forget_token(home)
    return Outcome(registration, reused=False)


def _register_with_key(home: Home, given: FoundKey, instance_id: str, found: ContainerFacts, timeout: float) -> Outcome:
    url = home.broker_url_override() or space_key_broker(given.key)
    name, digest = facts.container_name()
    with Client(url, timeout=15) as client:
        answer = _retrying(lambda: client.bootstrap_with_key(given.key, name, instance_id, found, digest), timeout)
    registration = _registration(url, answer, answer.agent_credential)
    home.save_registration(registration)
    _forget_token(home)
    return Outcome(registration, reused=False)


def _registration(url: str, answer: AgentRegistration, credential: str) -> Registration:
    return Registration(url=url, space_id=answer.space_id, space_name=answer.space_name, credential=credential)


def _forget_token(home: Home) -> None:
    # The Feature left the token (or key) on disk for the first bootstrap; it is not needed any more:
    # the container keeps its agent credential across restarts, never the key.
    home.bootstrap_token_file.unlink(missing_ok=True)
    home.space_key_file.unlink(missing_ok=True)


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
