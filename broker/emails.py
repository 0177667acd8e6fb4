"""Email addresses as the broker keeps them: the one rule, for accounts, shares and admin verbs.

A leaf: it imports nothing of the broker's rooms, so every room can use it.
"""

from __future__ import annotations

from broker.errors import checked
from pair.api import models as m


def normalize_email(email: str) -> str:
    """`email` in lower case; Problem 422 unless it is an address, in the wire type's words
    (pair.api.models.Email; callers strip what people typed)."""
    return checked(m.Email, email).lower()
