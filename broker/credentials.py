"""Opaque secrets (auth keys, sessions, agent credentials) and the ids of stored things.

Secrets carry a recognisable prefix (as GitHub's `ghp_` does) so leaked ones are easy to spot
and scan for. They are 256 random bits, so a plain SHA-256 is the right stored form: there is
nothing to brute-force, and lookups stay one indexed equality.
"""

from __future__ import annotations

import base64
import hashlib
import secrets

AUTH_KEY = "pair_ak_"
SESSION = "pair_st_"
AGENT = "pair_ac_"


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_id(prefix: str) -> str:
    """A short unguessable id such as `sp_k3v9q2m7x4hd`: 60 random bits, lowercase, no look-alikes."""
    return prefix + base64.b32encode(secrets.token_bytes(10)).decode().lower()[:12]
