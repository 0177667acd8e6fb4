"""`pair login EMAIL --request`: ask for an account and wait for the admins' decision, signed in
directly on approval. A device-flow hand-off (RFC 8628, as `gh auth login` does): the broker gives
a device code, kept 0600 in the config dir so that running the command again resumes waiting,
and this polls with it every `interval` seconds (longer after `slow_down`). No auth key is copied
by hand."""

from __future__ import annotations

import sys
import time

from pair import config
from pair.api.errors import ApiError, BrokerUnreachable, PairError
from pair.printable import printable

SLOW_DOWN = 5  # seconds added to the interval on `slow_down` (RFC 8628 3.5)


def request_access(url: str, email: str, message: str, *, sleep: float | None = None) -> None:
    """File (or resume) the request and wait. Raises PairError when an admin denies it or it
    expires (the pending request is forgotten then)."""
    from pair.api.client import Client

    email = email.strip().lower()
    pending = config.load_pending_request()
    with Client(url) as client:
        if pending is None or pending.url != url or pending.email != email:
            started = client.request_access(email, message)
            pending = config.PendingRequest(url, email, started.request_id, started.device_code)
            config.save_pending_request(pending)
            interval = float(started.interval)
            print(
                f"Asked {url} for an account for {printable(email)} ({started.request_id}); waiting for an admin "
                "to approve it. Ctrl-C stops waiting; running this again resumes.",
                file=sys.stderr,
                flush=True,
            )
        else:
            interval = 2.0
            print(f"Still waiting for an admin to decide {pending.request_id}.", file=sys.stderr, flush=True)
        while True:
            time.sleep(interval if sleep is None else sleep)
            try:
                answer = client.poll_access(pending.device_code)
            except BrokerUnreachable:
                continue  # the broker restarts, or the network drops: keep waiting
            except ApiError as exc:
                if exc.code in ("access_denied", "expired_token", "not_found"):
                    config.clear_pending_request()
                raise
            if answer.status == "slow_down":
                interval = max(interval + SLOW_DOWN, float(answer.interval))
                continue
            if answer.status == "authorization_pending":
                interval = float(answer.interval)
                continue
            break
    config.clear_pending_request()
    if answer.user is None or answer.expires_at is None or not answer.session_token:
        raise PairError(
            "The broker approved the request but sent no session.", "Run `pair login EMAIL --request` again."
        )
    config.save_session(
        config.Session(
            url=url, email=answer.user.email, token=answer.session_token, expires_at=answer.expires_at.isoformat()
        )
    )
    print(f"An admin approved your request. Logged in to {url} as {printable(answer.user.email)}.")
    if answer.space:
        print(printable(f'Your Space "{answer.space}" is ready: see it with `pair spaces list`.'))
