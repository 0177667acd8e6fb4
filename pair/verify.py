"""`pair verify USER KEY_BLOB KEY_TYPE`: sshd's AuthorizedKeysCommand (`%u %k %t`).

Runs twice per SSH login, so it is standard library only, touches no network, and decides from
the authorized-keys snapshot that `pair agent` keeps in $PAIR_HOME. It prints one authorized_keys
line for a key that belongs to the Space's owner or someone it is shared with, logging in as the
Space's login user, and nothing otherwise. It fails closed: no snapshot, an unreadable one, or
one older than its limit lets nobody in. It always exits 0 (sshd treats output, not status, as
the answer). Each decision goes to stderr, which sshd keeps in its log when run with -e.
"""

from __future__ import annotations

import json
import os
import sys
import time

SNAPSHOT = "authorized_keys.json"
CLOCK_SKEW = 60  # seconds a snapshot may claim to come from the future


def _log(decision: str, user: str, fingerprint: str, why: str) -> None:
    sys.stderr.write(f"pair verify: {decision} user={user} key={fingerprint}: {why}\n")


def _fingerprint(blob: str) -> str:
    try:
        from pair.sshkeys import fingerprint_b64

        return fingerprint_b64(blob)
    except ValueError:
        return "(not a key)"


def decide(user: str, blob: str, key_type: str, snapshot_path: str, now: float) -> tuple[str | None, str]:
    """(the authorized_keys line or None, the reason)."""
    try:
        with open(snapshot_path, encoding="utf-8") as f:
            snapshot = json.load(f)
        refreshed = float(snapshot["refreshed_at"])
        max_age = float(snapshot["max_age"])
        login_user = snapshot["login_user"]
        keys = snapshot["keys"]
    except FileNotFoundError:
        return None, "no snapshot yet (is `pair agent` running?)"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"unreadable snapshot ({type(exc).__name__})"
    age = now - refreshed
    if age > max_age or age < -CLOCK_SKEW:
        return None, f"snapshot is {age:.0f} s old, limit {max_age:.0f} s (agent cannot reach the broker)"
    if user != login_user:
        return None, f"logins are as {login_user!r} only"
    wanted = f"{key_type} {blob}"
    for entry in keys:
        if entry.get("key") == wanted:
            email, role = entry.get("email", "?"), entry.get("role", "?")
            return f"{wanted} {email} (pair: {role})", f"{email} ({role})"
    return None, "key not registered by anyone this Space is shared with"


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        sys.stderr.write("usage: pair verify USER KEY_BLOB KEY_TYPE  (sshd: AuthorizedKeysCommand ... %u %k %t)\n")
        return 0  # still nothing on stdout: nobody gets in
    user, blob, key_type = argv
    home = os.environ.get("PAIR_HOME") or "/opt/pair"
    line, why = decide(user, blob, key_type, os.path.join(home, SNAPSHOT), time.time())
    _log("allow" if line else "deny", user, _fingerprint(blob), why)
    if line:
        sys.stdout.write(line + "\n")
    return 0
