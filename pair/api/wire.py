"""The base of every wire type, in a leaf module so that `models` and `terminal` can both build on
it (`models` names the terminal target of a stream)."""

from __future__ import annotations

import msgspec


class Struct(msgspec.Struct, kw_only=True, omit_defaults=False):
    """Base for wire types: keyword-only fields, unknown fields ignored (forward compatible)."""
