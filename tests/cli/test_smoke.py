from __future__ import annotations

from tests.support.cli import Person


def test_authorize_then_list(people: dict[str, Person]) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    result = alice.pair("spaces", "authorize", "--user", "bob@example.com", "--name", "demo")
    assert result.ok, result.err
    assert result.out == (
        'You\'re ready to bootstrap your Space "demo".\n'
        "Your Space's token is valid for 1 hour and is available from SPACE_ID.txt.\n"
    )
    assert "demo" in bob.pair("spaces", "list").out
    assert "demo" not in carol.pair("spaces", "list").out
