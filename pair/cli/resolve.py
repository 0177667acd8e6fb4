"""The Space a `pair spaces` verb acts on, by one rule for every verb (seed 002, DESIGN §3):

- an optional positional SPACE, or `--space SPACE` (the same; both and different is an error);
- SPACE is the exact `sp_…` id, or a name unique among the Spaces you can see;
- omitted: the only Space you can see (for owner-only verbs, the only one you own); otherwise an
  error that lists the candidates and names a form the verb accepts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pair.api.errors import PairError

if TYPE_CHECKING:
    from pair.api.models import Space

# How each verb names its Space, for hints: a form the verb really accepts.
FORMS = {
    "connect": "pair spaces connect SPACE [-- SSH_ARGS…]",
    "share": "pair spaces share SPACE EMAIL…",
    "unshare": "pair spaces unshare SPACE EMAIL…",
    "delete": "pair spaces delete SPACE",
    "up": "pair spaces up SPACE",
    "down": "pair spaces down SPACE",
    "sessions": "pair spaces sessions SPACE",
    "kick": "pair spaces kick SPACE EMAIL",
    "terminal": "pair spaces terminal SPACE [--join ID]",
    "terminals": "pair spaces terminals SPACE",
    "terminal-role": "pair spaces terminal-role SPACE ID EMAIL driver|viewer",
    "authorize": "pair spaces authorize --space SPACE",
    "ports share": "pair spaces ports share PORT SPACE",
    "ports list": "pair spaces ports list SPACE",
    "ports unshare": "pair spaces ports unshare PORT SPACE",
    "forward": "pair spaces forward SPACE LOCAL[:REMOTE]…",
}
NAMED_BY = "SPACE is its name or its sp_… id; --space SPACE works too"


def form(verb: str) -> str:
    return FORMS.get(verb, f"pair spaces {verb} SPACE")


def one_ref(positional: str | None, option: str | None, verb: str) -> str | None:
    """The Space named by the positional SPACE and/or `--space`; an error if they disagree."""
    if positional is not None and option is not None and positional.strip() != option.strip():
        from pair.api.grammar import shown

        raise PairError(
            f"Two different Spaces were named: {shown(positional)} and --space {shown(option)}.",
            f"Name one: `{form(verb)}`.",
        )
    return positional if positional is not None else option


def resolve_space(spaces: list[Space], ref: str, verb: str = "") -> Space:
    """The Space `ref` names: the exact `sp_…` id, else the one Space with that name. Raises
    PairError naming the candidates when none or several match."""
    from pair.api.grammar import shown

    ref = ref.strip()
    for space in spaces:
        if space.id == ref:
            return space
    named = [s for s in spaces if s.name == ref]
    if len(named) == 1:
        return named[0]
    if not named:
        raise PairError(
            f"No Space you can see is called {shown(ref)}.",
            f"List your Spaces with `pair spaces list`; {NAMED_BY}.",
        )
    # Names are unique per owner, so a clash is between Spaces of different owners.
    candidates = ", ".join(f"{s.id} (owner {s.owner})" for s in named)
    raise PairError(
        f"Several Spaces you can see are called {shown(ref)}: {candidates}.",
        f"Pass the sp_… id instead of the name: `{form(verb or 'connect').replace('SPACE', named[0].id, 1)}`.",
    )


def choose_space(spaces: list[Space], ref: str | None, verb: str, *, owned: bool = False) -> Space:
    """The Space `verb` acts on: `ref` resolved, or with no `ref` the only candidate (the only
    Space you own when `owned`, else the only one you can see). Raises PairError otherwise."""
    if ref is not None:
        return resolve_space(spaces, ref, verb)
    pool = [s for s in spaces if s.role == "owner"] if owned else spaces
    if len(pool) == 1:
        return pool[0]
    if not pool:
        if owned:
            raise PairError(
                "You own no Space yet, so there is none to pick.",
                "Create one with `pair spaces authorize`"
                + (f", or name one you can see: `{form(verb)}`." if spaces else "."),
            )
        raise PairError(
            "You cannot see any Space yet.",
            "Create one with `pair spaces authorize`, or ask its owner to share one with you.",
        )
    names = ", ".join(f"{s.name} ({s.id})" for s in pool)
    raise PairError(
        f"Which Space? You {'own' if owned else 'can see'} several: {names}.",
        f"Name one: `{form(verb)}` ({NAMED_BY}).",
    )
