"""What `pair spaces ports` says when it refuses, against a real broker: a label with a control or
a bidi character names that cause (not "shorten it"), and with sharing off, `unshare` says
sharing is off rather than "not shared" (issue 12's security review)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pair.api.grammar import LABEL_MAX, label_problem
from tests.support.broker import RealBroker, real_broker
from tests.support.people import Person

pytestmark = pytest.mark.integration

REFUSED = st.characters(categories=["Cc", "Cf", "Zl", "Zp"])
VISIBLE = st.characters(exclude_categories=["Cc", "Cf", "Zl", "Zp", "Cs"])


@given(st.text(VISIBLE, max_size=40), REFUSED, st.text(VISIBLE, max_size=39))
def test_a_label_with_a_control_or_format_character_names_it(before: str, bad: str, after: str) -> None:
    problem = label_problem(before + bad + after)
    assert problem is not None and f"U+{ord(bad):04X}" in problem and "at most" not in problem


@given(st.text(VISIBLE, max_size=LABEL_MAX))
def test_visible_text_up_to_80_characters_is_a_label(label: str) -> None:
    assert label_problem(label) is None
    assert label_problem(label + "x" * (LABEL_MAX + 1 - len(label))) == (
        f"A port's label is at most {LABEL_MAX} characters; this one has {LABEL_MAX + 1}."
    )


@pytest.fixture(scope="module")
def apps_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealBroker]:
    with real_broker(tmp_path_factory.mktemp("ports") / "data", env={"PAIR_BROKER_APPS_DOMAIN": "*.localhost"}) as b:
        yield b


def test_the_cli_names_the_cause_of_a_refused_label(apps_broker: RealBroker, tmp_path: Path) -> None:
    alice = Person(apps_broker, "alice", tmp_path, ssh_key=False)
    alice.ok("spaces", "authorize", "--name", "demo", "--no-share")
    for label, cause in (("admin\u202egnp.exe", "U+202E"), ("two\nlines", "U+000A")):
        failed = alice.pair("spaces", "ports", "share", "8080", "demo", "--label", label)
        assert failed.returncode == 1 and cause in failed.stderr, failed.stderr
        assert "Shorten" not in failed.stderr and "Traceback" not in failed.stderr
    alice.ok("spaces", "ports", "share", "8080", "demo", "--label", "Docs")  # the same verb takes a good one


def test_unshare_with_sharing_off_says_it_is_off(tmp_path: Path) -> None:
    with real_broker(tmp_path / "data") as broker:
        alice = Person(broker, "alice", tmp_path, ssh_key=False)
        alice.ok("spaces", "authorize", "--name", "demo", "--no-share")
        failed = alice.pair("spaces", "ports", "unshare", "8080", "demo")
        assert failed.returncode == 1 and "Port sharing is off on this broker" in failed.stderr, failed.stderr
        assert "not shared" not in failed.stderr
