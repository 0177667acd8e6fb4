"""Whom a Space is shared with is decided in one place, broker.access: the people a person may
pick (`teammates`, the list the web page and `pair` offer) are exactly those a share may name
(`teammates_by_email`, for Spaces and Space keys alike)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Literal, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker import access
from broker.context import Context
from broker.errors import Problem
from broker.store import UserRecord

LOCAL = st.text(alphabet="abcxyz", min_size=1, max_size=4)


class Accounts:
    """A store that knows only the accounts (`users`, `user_by_email`)."""

    def __init__(self, people: list[UserRecord]) -> None:
        self.people = people

    async def users(self) -> list[UserRecord]:
        return list(self.people)

    async def user_by_email(self, email: str) -> UserRecord | None:
        return next((u for u in self.people if u.email == email), None)


def account(n: int, local: str) -> UserRecord:
    return UserRecord(id=f"u_{n}", email=f"{local}@example.com", is_admin=False, created_at=0)


async def outcome(
    ctx: Context, owner: UserRecord, emails: list[str], of: Literal["space", "key"]
) -> list[UserRecord] | Problem:
    try:
        return await access.teammates_by_email(ctx, owner, emails, of=of)
    except Problem as refused:
        return refused


@given(
    st.lists(LOCAL, min_size=1, max_size=5, unique=True),
    st.integers(0, 4),
    st.lists(LOCAL, max_size=4),
    st.sampled_from(["space", "key"]),
)
def test_a_share_names_exactly_the_people_a_person_may_pick(
    locals_: list[str], who: int, named: list[str], of: str
) -> None:
    people = [account(n, local) for n, local in enumerate(locals_)]
    owner = people[who % len(people)]
    ctx = cast(Context, SimpleNamespace(store=Accounts(people)))
    offered = {u.email for u in asyncio.run(access.teammates(ctx, owner))}
    emails = [f"{local.upper()}@Example.com" for local in named]  # people type them any case
    wanted = {e.lower() for e in emails}
    shared = asyncio.run(outcome(ctx, owner, emails, "key" if of == "key" else "space"))
    if isinstance(shared, Problem):
        assert not wanted <= offered  # refused only what cannot be picked
        if shared.code == "unknown_user":
            assert wanted - offered - {owner.email}
        else:
            assert (shared.code, shared.message) == ("invalid", access.OWN_EMAIL[of])
            assert owner.email in wanted
    else:
        assert wanted <= offered
        assert [u.email for u in shared] == list(dict.fromkeys(e.lower() for e in emails))  # each once, in order


def test_the_owner_is_never_among_their_own_teammates() -> None:
    alice, bob = account(0, "alice"), account(1, "bob")
    ctx = cast(Context, SimpleNamespace(store=Accounts([alice, bob])))
    assert asyncio.run(access.teammates(ctx, alice)) == [bob]
    with pytest.raises(Problem, match="You own this key"):
        asyncio.run(access.teammates_by_email(ctx, alice, ["bob@example.com", "ALICE@example.com"], of="key"))
