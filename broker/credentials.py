"""Opaque secrets (auth keys, sessions, agent credentials) and the ids of stored things.

Secrets carry a recognisable prefix (as GitHub's `ghp_` does) so leaked ones are easy to spot
and scan for. They are 256 random bits, so a plain SHA-256 is the right stored form: there is
nothing to brute-force, and lookups stay one indexed equality.
"""

from __future__ import annotations

import hashlib
import re
import secrets

AUTH_KEY = "pair_ak_"
SESSION = "pair_st_"
AGENT = "pair_ac_"
WEB_LINK = "pair_wl_"  # a one-time sign-in link's secret (broker.web.auth)
SPACE_KEY = "pair_sk_"  # a reusable Space key (broker.space_keys; its format: pair.api.tokens.space_key)

# Any of our secrets, and anything shaped like a JWT (a Space token), wherever it appears.
_SECRETS = re.compile(
    r"(pair_(?:ak|st|ac|wl)_)[A-Za-z0-9_-]+|(pair_sk_)[A-Za-z0-9_.-]+|\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"
)


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def redact(text: str) -> str:
    """`text` with every secret in it (a prefixed secret keeps its prefix, so a reader still
    sees what kind it was) replaced by `[redacted]`: for log lines that carry a URL."""
    if "pair_" not in text and "eyJ" not in text:
        return text
    return _SECRETS.sub(lambda m: (m.group(1) or m.group(2) or "") + "[redacted]", text)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"  # base32's, lowercase: no 0/o or 1/l look-alikes


def new_id(prefix: str) -> str:
    """A short unguessable id such as `sp_k3v9q2m7x4hd`: 60 random bits, lowercase, no look-alikes."""
    bits = secrets.randbits(60)
    return prefix + "".join([_ID_ALPHABET[(bits >> shift) & 31] for shift in range(0, 60, 5)])
