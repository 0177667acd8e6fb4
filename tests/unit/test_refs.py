"""How the page names a Space in the commands it offers (pair.api.refs) agrees with how the CLI
reads a Space argument (pair.cli.resolve), for any set of visible Spaces."""

from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import given
from hypothesis import strategies as st

from pair.api.models import Space
from pair.api.refs import host_aliases, space_ref
from pair.cli.resolve import resolve_space

WHEN = datetime(2026, 1, 1, tzinfo=timezone.utc)


def space(i: int, name: str, owner: str) -> Space:
    return Space(
        id=f"sp_{i:012d}",
        name=name,
        owner=owner,
        role="owner" if owner == "me@example.com" else "shared",
        state="created",
        created_at=WHEN,
        updated_at=WHEN,
    )


visible_spaces = st.lists(
    st.tuples(
        st.sampled_from(["demo", "box", "sp_000000000001", "x"]),
        st.sampled_from(["me@example.com", "a@example.com", "b@example.com"]),
    ),
    min_size=1,
    max_size=8,
    unique=True,  # a name is unique per owner
).map(lambda pairs: [space(i, name, owner) for i, (name, owner) in enumerate(pairs)])


@given(visible_spaces)
def test_the_offered_argument_finds_that_space(visible: list[Space]) -> None:
    for s in visible:
        ref = space_ref(s, visible)
        assert resolve_space(visible, ref) == s
        assert ref == s.name or ref == s.id


@given(visible_spaces)
def test_every_space_has_its_id_alias_and_no_alias_names_two(visible: list[Space]) -> None:
    aliases = host_aliases(visible)
    for s in visible:
        assert aliases[s.id][-1] == f"{s.id}.pair"
    every = [a for names in aliases.values() for a in names]
    assert len(every) == len(set(every))
