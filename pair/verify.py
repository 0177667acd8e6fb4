"""`pair verify USER KEY_BLOB KEY_TYPE`: sshd's AuthorizedKeysCommand (`%u %k %t`).

Runs twice per SSH login, so it is standard library only, touches no network, and decides from
the authorized-keys snapshot that `pair agent` keeps in $PAIR_HOME. It prints one authorized_keys
line for a key that belongs to the Space's owner or someone it is shared with, logging in as the
Space's login user, and nothing otherwise. It fails closed: no snapshot, an unreadable one, or
one older than its limit lets nobody in. It always exits 0 (sshd treats output, not status, as
the answer). Each decision goes to stderr, which sshd keeps in its log when run with -e.

The snapshot is plain text so that a decision is one substring search, with no JSON parser and
no OpenSSL to load (they would double this program's run time):

    # pair authorized-keys snapshot, written by `pair agent`
    # login_user=root refreshed_at=1800000000.5 max_age=120 space=sp_x version=3f2a
    ssh-ed25519 AAAAC3Nz… alice@example.com owner
    ecdsa-sha2-nistp256 AAAAE2Vj… bob@example.com shared
"""

from __future__ import annotations

import os
import sys
import time

from pair.printable import printable  # standard library only, no regular expressions

SNAPSHOT = "authorized_keys"
HEADER = "# pair authorized-keys snapshot, written by `pair agent`"
CLOCK_SKEW = 60  # seconds a snapshot may claim to come from the future


def render(
    login_user: str, refreshed_at: float, max_age: float, space_id: str, version: str, keys: list[tuple[str, str, str]]
) -> str:
    """The snapshot text for `keys` as (\"TYPE BLOB\", email, role)."""
    lines = [
        HEADER,
        f"# login_user={login_user} refreshed_at={refreshed_at:.3f} max_age={max_age:g} "
        f"space={space_id} version={version}",
    ]
    lines += [f"{key} {email} {role}" for key, email, role in keys]
    return "\n".join(lines) + "\n"


def header(text: str) -> dict[str, str]:
    """The `name=value` fields of the snapshot's second line."""
    lines = text.split("\n", 2)
    if len(lines) < 3 or lines[0] != HEADER or not lines[1].startswith("# "):
        raise ValueError("not a pair snapshot")
    return dict(field.split("=", 1) for field in lines[1][2:].split())


def entries(text: str) -> list[tuple[str, str, str]]:
    """Every (\"TYPE BLOB\", email, role) in a snapshot (for tools and tests; verify only searches)."""
    out = []
    for line in text.split("\n")[2:]:
        if line:
            key_type, blob, email, role = line.split(" ")
            out.append((f"{key_type} {blob}", email, role))
    return out


def decide(user: str, blob: str, key_type: str, snapshot_path: str, now: float) -> tuple[str | None, str]:
    """(the authorized_keys line or None, the reason)."""
    try:
        with open(snapshot_path, encoding="utf-8") as f:
            text = f.read()
        fields = header(text)
        refreshed, max_age, login_user = float(fields["refreshed_at"]), float(fields["max_age"]), fields["login_user"]
    except FileNotFoundError:
        return None, "no snapshot yet (is `pair agent` running?)"
    except (OSError, ValueError, KeyError) as exc:
        return None, f"unreadable snapshot ({type(exc).__name__})"
    age = now - refreshed
    if age > max_age or age < -CLOCK_SKEW:
        return None, f"snapshot is {age:.0f} s old, limit {max_age:.0f} s (agent cannot reach the broker)"
    if user != login_user:
        return None, f"logins are as {login_user!r} only"
    wanted = f"{key_type} {blob}"
    # Only a whole key field of an entry line matches: the search starts after the two header
    # lines (a key type of "#" must not match "# login_user=…"), and neither field may hold a
    # space or line break that would let it span two fields or two lines.
    body = text.find("\n", text.find("\n") + 1)
    whole = key_type and blob and not any(c in field for field in (key_type, blob) for c in " \t\r\n")
    start = text.find(f"\n{wanted} ", body) if whole else -1
    if start < 0:
        return None, "key not registered by anyone this Space is shared with"
    end = text.find("\n", start + 1)
    email, _, role = text[start + 1 + len(wanted) + 1 : end].partition(" ")
    return f"{wanted} {email} (pair: {role})", f"{email} ({role})"


def _fingerprint(blob: str) -> str:
    """SHA256:… as ssh-keygen prints it, via the builtin hash (importing hashlib loads OpenSSL)."""
    import binascii

    try:
        from _sha256 import sha256  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover - builds without the builtin module
        from hashlib import sha256
    try:
        digest = sha256(binascii.a2b_base64(blob)).digest()
    except (binascii.Error, ValueError):
        return "(not a key)"
    return "SHA256:" + binascii.b2a_base64(digest, newline=False).decode().rstrip("=")


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        sys.stderr.write("usage: pair verify USER KEY_BLOB KEY_TYPE  (sshd: AuthorizedKeysCommand ... %u %k %t)\n")
        return 0  # still nothing on stdout: nobody gets in
    user, blob, key_type = argv
    home = os.environ.get("PAIR_HOME") or "/opt/pair"
    line, why = decide(user, blob, key_type, os.path.join(home, SNAPSHOT), time.time())
    # sshd's log takes one line per decision: each value (the user ssh was asked for, the email
    # and login user from the snapshot) is escaped, so a newline in one cannot forge another line.
    verdict = "allow" if line else "deny"
    sys.stderr.write(f"pair verify: {verdict} user={printable(user)} key={_fingerprint(blob)}: {printable(why)}\n")
    if line:
        sys.stdout.write(line + "\n")
    return 0
