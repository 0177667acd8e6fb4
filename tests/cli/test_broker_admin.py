"""`pair-broker` given bad input: a data dir without a database, key files it cannot write,
settings out of range, bad usage. Each is one `error:` line and a `hint:` line, a non-zero
exit, and nothing changed on disk or in the database."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker import accounts
from broker.cli import main
from broker.context import open_context
from broker.errors import Problem
from broker.settings import Settings, SettingsError, check_public_url


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in Settings.env_vars():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


Admin = Callable[..., Run]


@pytest.fixture
def admin(capsys: pytest.CaptureFixture[str]) -> Admin:
    """`pair-broker ARGS` in this process (its umask restored afterwards)."""

    def run(*args: str) -> Run:
        umask = os.umask(0o022)
        os.umask(umask)
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            os.umask(umask)
        out, err = capsys.readouterr()
        return Run(code, out, err)

    return run


def refused(run: Run, message: str, hint: str = "", code: int = 1) -> None:
    """One `error:` line (and a `hint:` line), nothing else, and the exit code."""
    assert run.code == code, run
    lines = run.err.splitlines()
    assert lines[0] == f"error: {message}", run.err
    assert len(lines) == 2 and lines[1].startswith("hint: ") and hint in lines[1], run.err
    assert "Traceback" not in run.err and "╭" not in run.err


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data dir as `serve` leaves it: database, signing key, one user (bob, his key in bob.key)."""
    directory = tmp_path / "data"

    async def setup() -> None:
        ctx = await open_context(Settings(data_dir=directory), create=True)
        _, key = await accounts.create_user(ctx, "bob@example.com")
        (tmp_path / "bob.key").write_text(key)
        await ctx.database.close()

    asyncio.run(setup())
    return directory


def key_works(data_dir: Path, email: str, key: str) -> bool:
    async def check() -> bool:
        ctx = await open_context(Settings(data_dir=data_dir), create=False)
        try:
            await accounts.login(ctx, email, key)
        except Problem:
            return False
        finally:
            await ctx.database.close()
        return True

    return asyncio.run(check())


def emails(run_admin: Admin, data_dir: Path) -> list[str]:
    listed = run_admin("users", "list", "--data-dir", str(data_dir))
    assert listed.code == 0, listed
    return [line.split()[0] for line in listed.out.splitlines()[1:]]


def listing(path: Path) -> list[str] | None:
    return sorted(p.name for p in path.iterdir()) if path.exists() else None


# -- a data dir without a database ----------------------------------------------------------

VERBS = [
    ("users", "list"),
    ("users", "add", "new@example.com"),
    ("users", "remove", "bob@example.com"),
    ("users", "reset-key", "bob@example.com"),
    ("keys", "list"),
    ("keys", "rotate"),
    ("audit",),
]


@pytest.mark.parametrize("verb", VERBS, ids=lambda v: " ".join(v[:2]))
@pytest.mark.parametrize("where", ["missing", "empty", "env"])
def test_admin_verbs_refuse_a_data_dir_without_a_database(
    admin: Admin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, verb: tuple[str, ...], where: str
) -> None:
    directory = tmp_path / "typo"
    if where != "missing":
        directory.mkdir()
    args = [*verb]
    if where == "env":
        monkeypatch.setenv("PAIR_BROKER_DATA_DIR", str(directory))
    else:
        args += ["--data-dir", str(directory)]
    before = listing(directory)
    run = admin(*args)
    refused(run, f"No broker database in {directory}.", "--data-dir")
    assert "PAIR_BROKER_DATA_DIR" in run.err
    assert listing(directory) == before  # no database, no signing key, no directory made


# -- key files: checked before anything changes ---------------------------------------------


@pytest.mark.parametrize("verb", ["add", "reset-key"])
def test_a_key_file_that_cannot_be_written_changes_nothing(
    admin: Admin, data_dir: Path, tmp_path: Path, verb: str
) -> None:
    email = "new@example.com" if verb == "add" else "bob@example.com"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "a-dir").mkdir()
    cases = {
        tmp_path / "a-dir": f"{tmp_path / 'a-dir'} is a directory; an auth key needs a file name.",
        tmp_path / "no-such-dir" / "k.key": f"The directory {tmp_path / 'no-such-dir'} does not exist.",
        fifo: f"{fifo} exists and is not a regular file (a device, pipe or socket).",
    }
    before = emails(admin, data_dir)
    for key_file, message in cases.items():
        run = admin("users", verb, email, "--key-file", str(key_file), "--data-dir", str(data_dir))
        refused(run, message, "--key-file")
        assert emails(admin, data_dir) == before  # no user created
        assert key_works(data_dir, "bob@example.com", (tmp_path / "bob.key").read_text())  # no key replaced


@pytest.mark.parametrize("verb", ["add", "reset-key"])
def test_key_file_dash_is_standard_output_as_for_every_output(
    admin: Admin, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, verb: str
) -> None:
    monkeypatch.chdir(tmp_path)
    if verb == "reset-key":
        assert admin("users", "add", "new@example.com", "--data-dir", str(data_dir)).code == 0
    before = sorted(p.name for p in tmp_path.iterdir())
    run = admin("users", verb, "new@example.com", "--key-file", "-", "--data-dir", str(data_dir))
    assert run.code == 0, run
    assert key_works(data_dir, "new@example.com", run.out.strip()) and run.out.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no file named "-"


def test_users_add_never_overwrites_a_file_and_a_rerun_works(admin: Admin, data_dir: Path, tmp_path: Path) -> None:
    existing = tmp_path / "alice.key"
    existing.write_text("alice's key\n")
    run = admin("users", "add", "new@example.com", "--key-file", str(existing), "--data-dir", str(data_dir))
    refused(run, f"{existing} already exists, and an auth key is not written over an existing file.", "--key-file")
    assert existing.read_text() == "alice's key\n"
    assert "new@example.com" not in emails(admin, data_dir)

    key_file = tmp_path / "new.key"
    added = admin("users", "add", "new@example.com", "--key-file", str(key_file), "--data-dir", str(data_dir))
    assert added.code == 0, added
    assert added.out == f"Wrote new@example.com's auth key to {key_file} (mode 0600).\n"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    first = key_file.read_text()
    assert first.startswith("pair_ak_")
    # reset-key writes the new key over the user's key file: the documented way to hand it over
    reset = admin("users", "reset-key", "new@example.com", "--key-file", str(key_file), "--data-dir", str(data_dir))
    assert reset.code == 0, reset
    assert key_file.read_text() != first and key_file.read_text().startswith("pair_ak_")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".new.key")]  # no staged file left


# -- settings and usage ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--port", "99999"], {}, "The setting --port must be a port number from 0 to 65535, not 99999."),
        (
            [],
            {"PAIR_BROKER_PORT": "70000"},
            "The setting PAIR_BROKER_PORT must be a port number from 0 to 65535, not 70000.",
        ),
        (
            ["--public-url", "not a url"],
            {},
            "The setting --public-url is not a usable URL: it must start with http:// or https://.",
        ),
        (
            ["--public-url", "javascript:alert(1)//"],
            {},
            "The setting --public-url is not a usable URL: it must start with http:// or https://.",
        ),
        (
            ["--public-url", "https://user:pw@pair.example.com"],
            {},
            "The setting --public-url is not a usable URL: it must not carry a user name or password.",
        ),
        (
            ["--public-url", "https://pair.example.com/?next=x"],
            {},
            "The setting --public-url is not a usable URL: it must not have a query (?) or fragment (#).",
        ),
        (
            [],
            {"PAIR_BROKER_PUBLIC_URL": "https://pair.example.com/#top"},
            "The setting PAIR_BROKER_PUBLIC_URL is not a usable URL: it must not have a query (?) or fragment (#).",
        ),
        (
            [],
            {"PAIR_BROKER_PUBLIC_URL": "javascript:alert(1)//"},
            "The setting PAIR_BROKER_PUBLIC_URL is not a usable URL: it must start with http:// or https://.",
        ),
        (
            [],
            {"PAIR_BROKER_LOG_LEVEL": "loud"},
            "The setting PAIR_BROKER_LOG_LEVEL must be one of critical, error, warning, info, debug, trace,"
            " not 'loud'.",
        ),
    ],
)
def test_serve_refuses_bad_settings_before_touching_anything(
    admin: Admin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    run = admin("serve", "--data-dir", str(tmp_path / "data"), *args)
    refused(run, message, "docs/operations.md")
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["users", "add"], "Missing argument 'email'."),
        (["serve", "--port", "x"], "Invalid value for '--port'"),
        (["users", "list", "--bogus"], "No such option: --bogus"),
        (["nonsense"], "No such command 'nonsense'."),
    ],
)
def test_bad_usage_is_one_error_line_like_pair(admin: Admin, args: list[str], message: str) -> None:
    run = admin(*args)
    first = run.err.splitlines()[0]
    assert first.startswith(f"error: {message}"), run.err
    refused(run, first.removeprefix("error: "), "Run `pair-broker", code=2)
    assert run.err.rstrip().endswith(" --help`.")


def test_pair_broker_alone_shows_its_help(admin: Admin) -> None:
    run = admin()
    assert run.code == 2
    assert run.err.startswith("Usage: pair-broker [OPTIONS] COMMAND [ARGS]...")
    assert "error:" not in run.err and "╭" not in run.err


@settings(max_examples=300, deadline=None)
@given(url=st.one_of(st.text(max_size=40), st.from_regex(r"\A(https?|ftp|javascript):/{0,3}[^\s]{0,30}\Z")))
def test_an_accepted_public_url_is_a_plain_http_url(url: str) -> None:
    """Whatever the operator types, a URL that passes is http(s), names a host, and carries no
    user name, password, query or fragment; everything else is a SettingsError."""
    from urllib.parse import urlsplit

    try:
        checked = check_public_url("--public-url", url)
    except SettingsError as exc:
        refusal = str(exc)
    else:
        refusal = ""
    if refusal:
        assert refusal.startswith("The setting --public-url is not a usable URL: ")
        return
    parts = urlsplit(checked)
    assert parts.scheme in ("http", "https")
    assert parts.hostname
    assert parts.username is None and parts.password is None
    assert not parts.query and not parts.fragment and "#" not in checked and "?" not in checked
    assert all(32 < ord(c) < 127 for c in checked)


def test_every_command_takes_the_database_and_its_encryption_key() -> None:
    """An admin verb works on whatever database the broker uses (docs/operations.md): every
    `pair-broker` command takes --database and --encryption-key-file, as `serve` does."""
    import typer

    from broker.cli import app

    def commands(command: Any, path: str) -> Iterator[tuple[str, set[str]]]:
        subcommands = getattr(command, "commands", None)
        if not subcommands:
            yield path, {o for p in command.params for o in getattr(p, "opts", [])}
        for name, sub in (subcommands or {}).items():
            yield from commands(sub, f"{path} {name}".strip())

    found = dict(commands(typer.main.get_command(app), ""))
    assert "serve" in found and "users add" in found
    lacking = sorted(path for path, opts in found.items() if not {"--database", "--encryption-key-file"} <= opts)
    assert lacking == []
