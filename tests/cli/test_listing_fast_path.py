"""`pair spaces list [--json]` runs without Typer (pair.__main__ → pair.cli.listing): it must
answer exactly as the Typer command does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pair.cli import listing
from tests.support.broker import InProcessBroker
from tests.support.cli import Person


@pytest.mark.parametrize("argv", listing.FAST_ARGV)
def test_the_fast_path_says_what_the_typer_command_says(argv: list[str], tmp_path: Path, people) -> None:
    nobody = Person(people["alice"].broker, "nobody@example.com", tmp_path / "nobody")  # never logged in
    typer_path = nobody.pair(*argv)
    fast = subprocess.run(
        [sys.executable, "-m", "pair", *argv],
        env={"PAIR_CONFIG_DIR": str(nobody.config_dir), "HOME": str(nobody.home), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (fast.returncode, fast.stdout, fast.stderr) == (typer_path.code, typer_path.out, typer_path.err)
    assert fast.stderr.startswith("error: You are not logged in.")


def test_the_typer_command_and_the_fast_path_share_one_function(
    people, broker: InProcessBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[bool] = []
    monkeypatch.setattr(listing, "list_spaces", lambda *, as_json: seen.append(as_json))
    assert people["alice"].pair("spaces", "list", "--json").ok
    assert listing.main(["spaces", "list"]) == 0
    assert seen == [True, False]


@pytest.mark.parametrize(
    ("words", "fast", "space"),
    [
        (["demo"], True, None),
        (["--space", "demo", "--", "-L", "3000:localhost:3000"], True, "demo"),
        (["--space=demo", "--", "--help"], True, "demo"),  # after `--`: ssh's words
        (["--help"], False, None),
        (["demo", "-h"], False, None),
        (["--space"], False, None),  # Typer names the missing value
        (["--space", "a", "--space", "b"], False, None),
    ],
)
def test_connect_skips_typer_only_for_what_it_parses_itself(words: list[str], fast: bool, space: str | None) -> None:
    from pair.cli.connecting import space_option

    assert space_option(words) == (fast, space)


@pytest.mark.parametrize("words", [["demo"], ["--space", "demo", "--", "true"]])
def test_connect_fast_path_says_what_the_typer_command_says(words: list[str], tmp_path: Path, people) -> None:
    nobody = Person(people["alice"].broker, "nobody@example.com", tmp_path / "nobody")
    typer_path = nobody.pair("spaces", "connect", *words)
    fast = subprocess.run(
        [sys.executable, "-m", "pair", "spaces", "connect", *words],
        env={"PAIR_CONFIG_DIR": str(nobody.config_dir), "HOME": str(nobody.home), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (fast.returncode, fast.stdout, fast.stderr) == (typer_path.code, typer_path.out, typer_path.err)
    assert "error: You are not logged in." in fast.stderr
    helped = subprocess.run(
        [sys.executable, "-m", "pair", "spaces", "connect", "--help"], capture_output=True, text=True, check=False
    )
    assert helped.returncode == 0 and "Open an SSH shell in a Space" in helped.stdout
