"""`--space ID|NAME`: the exact `sp_…` id, or a name unique among the Spaces you can see."""

from __future__ import annotations

from pair.api.errors import PairError
from pair.api.models import Space


def resolve_space(spaces: list[Space], ref: str) -> Space:
    ref = ref.strip()
    for space in spaces:
        if space.id == ref:
            return space
    named = [s for s in spaces if s.name == ref]
    if len(named) == 1:
        return named[0]
    if not named:
        raise PairError(
            f"No Space you can see is called {ref!r}.",
            "List your Spaces with `pair spaces list`; --space takes a name or an sp_… id.",
        )
    # Names are unique per owner, so a clash is between Spaces of different owners.
    candidates = ", ".join(f"{s.id} (owner {s.owner})" for s in named)
    raise PairError(
        f"Several Spaces you can see are called {ref!r}: {candidates}.", "Pass the sp_… id instead of the name."
    )
