"""pair.cli.resolve.resolve_space: `--space` takes an sp_… id or a name unique among visible Spaces."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from pair.api.errors import PairError
from pair.api.models import Role, Space
from pair.cli.resolve import resolve_space

WHEN = datetime(2027, 1, 15, 8, 0, tzinfo=timezone.utc)


def space(sid: str, name: str, owner: str = "alice@example.com", role: Role = "owner") -> Space:
    return Space(id=sid, name=name, owner=owner, role=role, state="running", created_at=WHEN, updated_at=WHEN)


SPACES = [
    space("sp_aaaaaaaaaaaa", "demo"),
    space("sp_bbbbbbbbbbbb", "shared", owner="bob@example.com", role="shared"),
    space("sp_cccccccccccc", "clash", owner="bob@example.com", role="shared"),
    space("sp_dddddddddddd", "clash", owner="carol@example.com", role="shared"),
]


def test_by_id() -> None:
    assert resolve_space(SPACES, "sp_bbbbbbbbbbbb") is SPACES[1]
    assert resolve_space(SPACES, "sp_dddddddddddd") is SPACES[3]


def test_by_unique_name() -> None:
    assert resolve_space(SPACES, "demo") is SPACES[0]
    assert resolve_space(SPACES, "shared") is SPACES[1]


def test_surrounding_whitespace_is_ignored() -> None:
    assert resolve_space(SPACES, "  demo\n") is SPACES[0]
    assert resolve_space(SPACES, " sp_aaaaaaaaaaaa ") is SPACES[0]


@pytest.mark.parametrize("ref", ["nope", "sp_zzzzzzzzzzzz", "Demo", "dem"])
def test_unknown_is_an_error_with_a_hint(ref: str) -> None:
    with pytest.raises(PairError) as info:
        resolve_space(SPACES, ref)
    assert ref in info.value.message
    assert "pair spaces list" in info.value.hint


def test_nothing_visible_is_an_error() -> None:
    with pytest.raises(PairError):
        resolve_space([], "demo")


def test_ambiguous_name_lists_every_candidate_and_owner() -> None:
    third = space("sp_eeeeeeeeeeee", "clash", owner="dave@example.com", role="shared")
    with pytest.raises(PairError) as info:
        resolve_space([*SPACES, third], "clash")
    message = info.value.message
    for candidate in (SPACES[2], SPACES[3], third):
        assert candidate.id in message
        assert candidate.owner in message
    assert SPACES[0].id not in message
    assert "id" in info.value.hint


def test_an_id_wins_over_a_name_equal_to_it() -> None:
    # Someone named their Space after another Space's id: the id still means that Space.
    impostor = space("sp_ffffffffffff", "sp_aaaaaaaaaaaa", owner="mallory@example.com", role="shared")
    for spaces in ([impostor, *SPACES], [*SPACES, impostor]):
        assert resolve_space(spaces, "sp_aaaaaaaaaaaa") is SPACES[0]
