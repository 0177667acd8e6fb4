"""Email addresses as the broker keeps them: the one rule, for accounts, shares and admin verbs.

A leaf: it imports nothing of the broker's rooms, so every room can use it.
"""

from __future__ import annotations

import re

from broker.errors import invalid
from pair.api import models as m

EMAIL_RE = re.compile(m.EMAIL_PATTERN)  # the wire contract's rule, so /openapi.json states it exactly


def normalize_email(email: str) -> str:
    """`email` in lower case; Problem 422 unless it is an address (callers strip what people typed)."""
    if len(email) > m.EMAIL_MAX_LENGTH or not EMAIL_RE.match(email):
        raise invalid(f"{email!r} is not an email address.", "Use the form name@example.com.")
    return email.lower()
