"""What the CLI needs to know about a Space token without verifying it (the broker verifies)."""

from __future__ import annotations

import base64
import binascii
import json

from pair.api.errors import PairError

AUDIENCE = "pair:space-bootstrap"
DEFAULT_TTL_SECONDS = 3600


def unverified_claims(token: str) -> dict[str, object]:
    """Read a JWT's payload without checking it, to learn which broker (`iss`) to ask."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise PairError(
            "That is not a Space token: a token has three dot-separated parts.",
            "Copy the whole single line of SPACE_ID.txt written by `pair spaces authorize`.",
        )
    try:
        payload = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError) as exc:
        raise PairError(
            "That is not a Space token: its payload does not decode.",
            "Copy the whole single line of SPACE_ID.txt written by `pair spaces authorize`.",
        ) from exc
    if not isinstance(claims, dict):
        raise PairError("That is not a Space token: its payload is not a JSON object.")
    return claims
