"""The base of every wire type, in a leaf module so that `models` and `terminal` can both build on
it (`models` names the terminal target of a stream)."""

from __future__ import annotations

from typing import Any

import msgspec


class Struct(msgspec.Struct, kw_only=True, omit_defaults=False):
    """Base for wire types: keyword-only fields, unknown fields ignored (forward compatible)."""


def grammar_meta(what: str, rule: str, **constraints: Any) -> msgspec.Meta:
    """The constraints of a wire field with a grammar (msgspec enforces them wherever the type is
    decoded or converted: pattern, length, bounds), and how a refusal reads: `what` names the
    field as a noun phrase ("a valid template name"), `rule` says what it may hold in one
    sentence, which is also its description in /openapi.json. pair.api.fields turns msgspec's
    refusal into "'VALUE' is not WHAT." with RULE as the hint."""
    return msgspec.Meta(description=rule, extra={"what": what}, **constraints)
