"""Reusable Space keys: `pair spaces keys create|list|revoke` and containers (temporary
PAIR_HOMEs) that bootstrap with one, against the in-process broker."""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pair import durations
from pair.api.grammar import container_digest, container_identity, is_space_name, space_name_from
from pair.api.models import SPACE_KEY_DEFAULT_SECONDS
from pair.api.tokens import SPACE_KEY, SecretError, normalize, space_key, space_key_broker
from pair.cli.space_keys import DEFAULT_EXPIRES
from tests.cli.helpers import NOT_A_REGULAR_FILE, admin, assert_error, client_as
from tests.support import fake_gh
from tests.support.broker import InProcessBroker
from tests.support.cli import Person, Result


def create_key(person: Person, *args: str) -> str:
    result = person.pair("spaces", "keys", "create", *args)
    assert result.ok, result.err
    key = result.out.strip()
    assert key.startswith("pair_sk_") and "\n" not in key  # the key alone on stdout: `> FILE` works
    return key


def boot(person: Person, home: Path, name: str, key: str, *args: str) -> Result:
    env = {"PAIR_HOME": str(home), "CODESPACE_NAME": name, "PAIR_SPACE_KEY": key}
    return person.pair("spaces", "bootstrap", *args, env=env)


def spaces_of(person: Person) -> dict[str, dict[str, object]]:
    result = person.pair("spaces", "list", "--json")
    assert result.ok, result.err
    return {s["name"]: s for s in json.loads(result.out)}


def keys_of(person: Person) -> dict[str, dict[str, Any]]:
    result = person.pair("spaces", "keys", "list", "--json")
    assert result.ok, result.err
    return {k["name"]: k for k in json.loads(result.out)}


def everything_under(*folders: Path) -> str:
    return "".join(p.read_bytes().decode("utf-8", "replace") for f in folders for p in f.rglob("*") if p.is_file())


def test_one_key_two_containers_a_rebuild_then_revoked(people, broker: InProcessBroker, tmp_path):
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    key = create_key(alice, "--name", "shop", "--user", bob.email, "--expires", "30d")
    assert space_key_broker(key) == broker.url  # the key names its broker: a container needs nothing else

    first = boot(alice, tmp_path / "c1", "octo-shop-x1y2", key)
    assert first.ok, first.err
    second = boot(alice, tmp_path / "c2", "Octo Shop_Z9", key)  # sanitized to the Space-name rule
    assert second.ok, second.err
    made = spaces_of(alice)
    assert set(made) == {"octo-shop-x1y2", "octo-shop_z9"}
    for space in made.values():
        assert space["role"] == "owner" and space["state"] == "starting"
    assert set(spaces_of(bob)) == {"octo-shop-x1y2", "octo-shop_z9"}  # shared as the key says
    assert spaces_of(carol) == {}
    assert first.out.startswith(
        f'Bootstrapped this container as the Space "octo-shop-x1y2" ({made["octo-shop-x1y2"]["id"]})'
    )

    # Attaching again: the container checks in with its credential; the key is not used again.
    again = boot(alice, tmp_path / "c1", "octo-shop-x1y2", key)
    assert again.out.startswith('This container is already the Space "octo-shop-x1y2"'), again.err

    # A rebuild: a new container (a new PAIR_HOME, new instance id) with the same name.
    rebuilt = boot(alice, tmp_path / "c1-rebuilt", "octo-shop-x1y2", key)
    assert rebuilt.ok, rebuilt.err
    assert spaces_of(alice)["octo-shop-x1y2"]["id"] == made["octo-shop-x1y2"]["id"]
    assert len(spaces_of(alice)) == 2
    stale = alice.pair("spaces", "bootstrap", env={"PAIR_HOME": str(tmp_path / "c1"), "PAIR_SPACE_KEY": ""})
    assert stale.code == 1 and "no longer valid" in stale.err  # the old container's credential died

    listed = keys_of(alice)["shop"]
    assert listed["state"] == "active" and listed["uses"] == 3 and listed["last_used_at"]
    assert listed["share_with"] == [bob.email] and set(listed["spaces"]) == set(made)
    assert listed["expires_at"]

    revoked = alice.pair("spaces", "keys", "revoke", "shop")
    assert revoked.ok, revoked.err
    assert 'Revoked the Space key "shop": it registers no new containers.' in revoked.out
    refused = boot(alice, tmp_path / "c3", "octo-shop-new", key)
    message, hint = assert_error(refused, 'The Space key "shop" was revoked at ')
    assert "it registers no new containers" in message
    assert f"Ask its owner ({alice.email}) for a new key" in hint
    assert "octo-shop-new" not in spaces_of(alice)
    # Containers it registered keep their Spaces (they hold their own credential, not the key).
    kept = boot(alice, tmp_path / "c2", "Octo Shop_Z9", key)
    assert kept.ok and kept.out.startswith('This container is already the Space "octo-shop_z9"'), kept.err
    assert keys_of(alice)["shop"]["state"] == "revoked"

    # The key is nowhere on disk: not in the containers' homes, nor the broker's data, nor the output.
    homes = [tmp_path / n for n in ("c1", "c2", "c1-rebuilt", "c3")]
    assert key not in everything_under(*homes, broker.ctx.settings.data_dir)
    assert key.split(".")[1] not in everything_under(*homes, broker.ctx.settings.data_dir)
    for home in homes[:3]:
        assert stat.S_IMODE((home / "agent.json").stat().st_mode) == 0o600
        assert not (home / "space-key").exists()


def test_an_expired_key_registers_no_container(people, broker: InProcessBroker, tmp_path):
    alice = people["alice"]
    key = create_key(alice, "--name", "short", "--expires", "1h")
    broker.clock.advance(3601)
    refused = boot(alice, tmp_path / "c1", "late", key)
    _, hint = assert_error(refused, 'The Space key "short" expired at ')
    assert "rebuild the container" in hint
    assert keys_of(alice)["short"]["state"] == "expired"
    assert spaces_of(alice) == {}


def test_revoke_can_delete_the_spaces_the_key_made(people, tmp_path):
    alice, bob = people["alice"], people["bob"]
    key = create_key(alice, "--name", "ci", "--user", bob.email)
    assert boot(alice, tmp_path / "c1", "run-1", key).ok
    result = alice.pair("spaces", "keys", "revoke", "ci", "--delete-spaces")
    assert result.ok, result.err
    assert "Deleted the Spaces it made: run-1." in result.out
    assert "run-1" not in spaces_of(alice)
    again = alice.pair("spaces", "keys", "revoke", "ci")
    assert_error(again, 'You have no Space key named "ci" that is not revoked.', hint="pair spaces keys list")


def test_a_name_the_owner_uses_already_gets_a_suffix_and_keys_are_per_owner(people, tmp_path):
    alice, bob = people["alice"], people["bob"]
    made = alice.pair("spaces", "authorize", "--no-share", "--name", "box")
    assert made.ok, made.err
    key = create_key(alice, "--name", "k1")
    assert boot(alice, tmp_path / "c1", "box", key).ok
    assert set(spaces_of(alice)) == {"box", "box-2"}
    assert boot(alice, tmp_path / "c1-again", "box", key).ok  # a rebuild finds "box-2" by its container name
    assert set(spaces_of(alice)) == {"box", "box-2"}
    # Another key of the same owner is another set of containers: no takeover across keys.
    other = create_key(alice, "--name", "k2")
    assert boot(alice, tmp_path / "c2", "box", other).ok
    assert set(spaces_of(alice)) == {"box", "box-2", "box-3"}
    duplicate = alice.pair("spaces", "keys", "create", "--name", "k1")
    assert_error(duplicate, 'You already have a Space key named "k1".')
    assert keys_of(bob) == {}


def test_output_writes_the_key_0600_and_prints_no_secret(people, tmp_path):
    alice = people["alice"]
    result = alice.pair("spaces", "keys", "create", "--name", "repo", "--output", "key.txt", "--expires", "never")
    assert result.ok, result.err
    written = alice.cwd / "key.txt"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    key = written.read_text().strip()
    assert key not in result.out + result.err
    assert 'Created the Space key "repo", valid with no expiry' in result.out
    assert keys_of(alice)["repo"]["expires_at"] is None
    assert boot(alice, tmp_path / "c1", "from-file", written.read_text()).ok


def test_a_key_made_without_a_lifetime_lives_90_days_whoever_makes_it(people, broker: InProcessBroker):
    """Reproduction: a key made over the API without `expires_in_seconds` never expired
    (`expires_at: null`) while the README says keys live 90 days by default. The broker decides
    the default, so a script calling the API, the CLI, `keys list` and `--json` all agree;
    `null` (`--expires never`) still asks for a key that never expires."""
    alice = people["alice"]
    login = broker.http.post("/api/v1/login", json={"email": alice.email, "auth_key": broker.keys[alice.email]})
    bearer = {"Authorization": f"Bearer {login.json()['session_token']}"}
    now = datetime.fromtimestamp(broker.clock.now, timezone.utc)
    in_90_days = (now + timedelta(days=90)).replace(microsecond=0)

    made = broker.http.post("/api/v1/space-keys", json={"name": "api"}, headers=bearer)
    assert made.status_code == 200, made.text
    assert made.json()["key"]["expires_at"] == in_90_days.strftime("%Y-%m-%dT%H:%M:%SZ")
    never = broker.http.post("/api/v1/space-keys", json={"name": "forever", "expires_in_seconds": None}, headers=bearer)
    assert never.json()["key"]["expires_at"] is None
    create_key(alice, "--name", "cli")  # the CLI's default is the broker's

    listed = keys_of(alice)
    assert listed["api"]["expires_at"] == listed["cli"]["expires_at"] == in_90_days.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert listed["forever"]["expires_at"] is None
    table = alice.pair("spaces", "keys", "list")
    rows = {line.split()[0]: line for line in table.out.splitlines()[1:]}
    assert in_90_days.strftime("%Y-%m-%d %H:%M") in rows["api"] and in_90_days.strftime("%Y-%m-%d %H:%M") in rows["cli"]
    assert "never" in rows["forever"]
    assert alice.pair("spaces", "keys", "create", "--help").out.count(DEFAULT_EXPIRES) >= 1
    assert durations.parse(DEFAULT_EXPIRES) == SPACE_KEY_DEFAULT_SECONDS  # the CLI says what the broker does


def _existing_file(path: Path) -> None:
    path.write_text("mine\n")


OUTPUT_REFUSED = {
    **NOT_A_REGULAR_FILE,
    "existing file": (_existing_file, "out.txt already exists, and the Space key is not written over an existing file"),
    "directory": (Path.mkdir, "out.txt is a directory"),
}


def test_the_owner_among_the_keys_people_is_told_about_the_key_not_a_space(people):
    alice = people["alice"]
    result = alice.pair("spaces", "keys", "create", "--name", "repo", "--user", alice.email.upper())
    assert_error(result, "You own this key and every Space it makes; share them with other people.", hint="Drop")
    assert keys_of(alice) == {}


@pytest.mark.parametrize("flag", ["--output", "-o"])
def test_output_dash_is_the_key_alone_on_standard_output_as_for_authorize(people, flag):
    # `pair spaces keys create --output - | cat`: "-" is standard output for every --output (pair.files).
    alice = people["alice"]
    result = alice.pair("spaces", "keys", "create", "--name", "repo", flag, "-")
    assert result.ok, result.err
    assert result.out == normalize(result.out, SPACE_KEY) + "\n"
    assert result.err.startswith('Created the Space key "repo"'), result.err
    assert list(alice.cwd.iterdir()) == []  # no file named "-"
    assert keys_of(alice)["repo"]["state"] == "active"


@pytest.mark.parametrize("kind", sorted(OUTPUT_REFUSED))
def test_an_output_that_cannot_take_the_key_is_refused_before_a_key_is_made(people, kind):
    alice = people["alice"]
    make, message = OUTPUT_REFUSED[kind]
    make(alice.cwd / "out.txt")
    before = {p.name: (p.lstat().st_mode, p.is_symlink(), p.lstat().st_size) for p in alice.cwd.iterdir()}
    result = alice.pair("spaces", "keys", "create", "--name", "repo", "--output", "out.txt")
    assert_error(result, message, hint="--output")
    assert keys_of(alice) == {}  # nothing made on the broker
    assert {p.name: (p.lstat().st_mode, p.is_symlink(), p.lstat().st_size) for p in alice.cwd.iterdir()} == before


def test_an_output_in_a_missing_directory_is_refused_before_a_key_is_made(people):
    alice = people["alice"]
    result = alice.pair("spaces", "keys", "create", "--name", "repo", "--output", "missing/key.txt")
    assert_error(result, "The directory missing does not exist.", hint="--output")
    assert keys_of(alice) == {}
    assert list(alice.cwd.iterdir()) == []


def test_a_key_that_could_not_be_written_is_revoked(people, monkeypatch: pytest.MonkeyPatch):
    alice = people["alice"]

    def full(src: object, dst: object) -> None:  # the disk filled up after the check
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(os, "replace", full)
        result = alice.pair("spaces", "keys", "create", "--name", "repo", "--output", "key.txt")
    assert_error(
        result,
        'Cannot write the Space key to key.txt: No space left on device; the new Space key "repo" is revoked',
        hint="--output",
    )
    assert keys_of(alice)["repo"]["state"] == "revoked"  # never a key nobody holds
    assert list(alice.cwd.iterdir()) == []  # no temp file left either


def test_bad_keys_are_refused_with_their_cause(people, broker: InProcessBroker, tmp_path):
    alice = people["alice"]
    key = create_key(alice, "--name", "k")
    cut = boot(alice, tmp_path / "c1", "x", key[:-3])
    assert_error(cut, "The Space key from PAIR_SPACE_KEY is not usable: it is cut short")
    unknown = space_key(broker.url, "A" * 43)
    refused = boot(alice, tmp_path / "c1", "x", unknown)
    assert_error(refused, "This broker does not know that Space key.")
    token_as_key = alice.pair("spaces", "authorize", "--no-share", "--name", "t")
    assert token_as_key.ok
    token = (alice.cwd / "SPACE_ID.txt").read_text().strip()
    wrong = alice.pair("spaces", "bootstrap", "--key", token, env={"PAIR_HOME": str(tmp_path / "c2")})
    assert_error(wrong, "it is a Space token (the contents of SPACE_ID.txt), not a Space key")
    swapped = alice.pair("spaces", "bootstrap", key, env={"PAIR_HOME": str(tmp_path / "c2")})
    assert_error(swapped, "it is a Space key (pair_sk_…), not a Space token", hint="pair spaces bootstrap --key")
    with pytest.raises(SecretError):
        normalize("pair_sk_" + "x" * 50, SPACE_KEY)


@given(st.text(max_size=300))
def test_any_container_name_becomes_a_valid_space_name(text: str) -> None:
    name = space_name_from(text)
    assert is_space_name(name)
    assert space_name_from(name) == name  # a valid name is kept as it is


def _identity(raw: str) -> str:
    """What the broker recognises a container by, from its raw name (as pair.container.facts sends it)."""
    return container_identity(space_name_from(raw), container_digest(raw))


@given(st.text(max_size=80), st.text(max_size=80))
def test_two_raw_container_names_never_share_a_space_and_one_always_finds_its_own(a: str, b: str) -> None:
    assert _identity(a) == _identity(a)
    assert (_identity(a) == _identity(b)) == (a == b)
    if is_space_name(a):  # a container of pair before digests (name only) finds the same Space
        assert container_identity(a, None) == _identity(a)


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("ünïcödé", "unicode"),
        ("Crème Brûlée!", "creme-brulee"),
        ("my app!", "my-app"),
        ("日本語", "container"),
        ("-x-", "x-"),
    ],
)
def test_container_names_keep_their_letters(raw: str, name: str) -> None:
    assert space_name_from(raw) == name


def test_names_that_clean_alike_are_two_containers_and_a_rebuild_finds_its_own(people, tmp_path):
    alice = people["alice"]
    key = create_key(alice, "--name", "repo")
    became = {}
    for n, raw in enumerate(["my.app", "my-app", "日本", "中文", "my.app"]):
        result = boot(alice, tmp_path / f"c{n}", raw, key)
        assert result.ok, result.err
        became[n] = result.out.split('"')[1]  # Bootstrapped this container as the Space "NAME" …
    assert became == {0: "my-app", 1: "my-app-2", 2: "container", 3: "container-2", 4: "my-app"}
    assert sorted(spaces_of(alice)) == ["container", "container-2", "my-app", "my-app-2"]


@given(
    st.from_regex(r"https?://[a-z0-9-]{1,20}(\.[a-z0-9-]{1,20}){0,2}(:[0-9]{1,5})?(/[a-z0-9_-]{0,20})?", fullmatch=True)
)
def test_a_key_names_its_broker_whatever_the_url(url: str) -> None:
    key = space_key(url, "a" * 43)
    assert space_key_broker(f'  export PAIR_SPACE_KEY="{key}"\r\n') == url


def test_init_new_key_makes_a_key_and_stores_it_only_in_the_secret(people, tmp_path):
    alice, bob = people["alice"], people["bob"]
    gh = fake_gh.install(tmp_path / "bin", repo="octo/shop")
    project = alice.cwd / "shop"
    project.mkdir()
    result = alice.pair(
        "spaces", "init", "devcontainer", "--dir", "shop", "--new-key", "--user", bob.email, env={"PATH": gh.path()}
    )
    assert result.ok, result.err
    assert 'Made the Space key "octo-shop" (its Spaces are shared with bob@example.com;' in result.out
    [secret_set] = [c for c in gh.calls() if c["args"][:2] == ["secret", "set"]]
    assert secret_set["args"] == ["secret", "set", "PAIR_SPACE_KEY", "--app", "codespaces", "--repo", "octo/shop"]
    key = secret_set["stdin"]
    assert space_key_broker(key) == "http://testserver"  # a real key, on gh's standard input only
    assert key not in result.out + result.err + everything_under(project)
    assert keys_of(alice)["octo-shop"]["share_with"] == [bob.email]
    assert boot(alice, tmp_path / "c1", "cs-1", key).ok  # and it works

    # Running it twice changes nothing: the key it made is found by its name, and kept.
    files = {p: p.read_bytes() for p in project.rglob("*") if p.is_file()}
    again = alice.pair(
        "spaces", "init", "devcontainer", "--dir", "shop", "--new-key", "--user", bob.email, env={"PATH": gh.path()}
    )
    assert again.ok, again.err
    assert 'The Space key "octo-shop" exists already (an earlier --new-key made it): kept' in again.out
    assert [c for c in gh.calls() if c["args"][:2] == ["secret", "set"]] == [secret_set]
    assert list(keys_of(alice)) == ["octo-shop"]
    assert {p: p.read_bytes() for p in project.rglob("*") if p.is_file()} == files


def test_init_new_key_without_gh_writes_nothing_and_a_key_gh_refused_is_revoked(people, tmp_path):
    alice = people["alice"]
    project = alice.cwd / "shop"
    project.mkdir()
    nothing = alice.pair("spaces", "init", "devcontainer", "--dir", "shop", "--new-key", env={"PATH": str(tmp_path)})
    assert_error(
        nothing, "--new-key stores the new key as a Codespaces secret with GitHub's CLI, which is not installed."
    )
    assert list(project.iterdir()) == []
    failing = fake_gh.install(tmp_path / "bin", repo="octo/shop", secret_error="HTTP 403: Resource not accessible")
    refused = alice.pair("spaces", "init", "devcontainer", "--dir", "shop", "--new-key", env={"PATH": failing.path()})
    assert refused.code == 1  # after the configuration was written, as with --key-file
    assert "error: gh could not set the Codespaces secret PAIR_SPACE_KEY of octo/shop: HTTP 403" in refused.err
    assert keys_of(alice)["octo-shop"]["state"] == "revoked"  # not left usable and unstored


# -- a key's template (issue 16: "`pair spaces authorize --template NAME` (and Space keys) pick one") --


def templates_of(broker: InProcessBroker, person: Person) -> dict[str, tuple[str | None, int, int]]:
    """Each Space's template and the units it costs, as the broker's API answers them."""
    with client_as(broker, person) as api:
        return {s.name: (s.template, s.compute_units, s.storage_units) for s in api.spaces()}


@pytest.fixture
def seed(broker: InProcessBroker) -> None:
    """Seed 001's templates: a (3 compute units, the default) and b (2); each 1 storage unit."""
    for args in (("a", "--compute", "3", "--storage", "1", "--default"), ("b", "--compute", "2", "--storage", "1")):
        assert admin(broker, "templates", "add", *args).ok


def test_a_key_makes_its_spaces_from_the_template_it_names_or_the_default_at_registration(
    people, broker: InProcessBroker, tmp_path, seed
):
    alice = people["alice"]
    made = alice.pair("spaces", "keys", "create", "--name", "small", "--template", "b", "--output", "small.key")
    assert made.ok, made.err
    assert "its Spaces are made from template b, shared with nobody." in made.out
    small = (alice.cwd / "small.key").read_text().strip()
    default = create_key(alice, "--name", "plain")
    assert keys_of(alice)["small"]["template"] == "b" and keys_of(alice)["plain"]["template"] is None
    assert not keys_of(alice)["small"]["template_removed"] and not keys_of(alice)["plain"]["template_removed"]
    # The audit log says what each key's Spaces are made from (reproduction: only the key's name).
    made_rows = json.loads(admin(broker, "audit", "--action", "space_key.create", "--json").out)
    assert sorted(row["detail"] for row in made_rows) == ["plain, the default template", "small, template b"]
    listed = alice.pair("spaces", "keys", "list")
    assert [line.split()[:2] for line in listed.out.splitlines()] == [
        ["name", "template"],
        ["plain", "(default)"],  # the broker's default when a container registers
        ["small", "b"],
    ]

    assert boot(alice, tmp_path / "c1", "box-1", small).ok
    assert boot(alice, tmp_path / "c2", "box-2", default).ok
    assert admin(broker, "templates", "set-default", "b").ok  # the default when a container registers
    assert boot(alice, tmp_path / "c3", "box-3", default).ok
    assert templates_of(broker, alice) == {"box-1": ("b", 2, 1), "box-2": ("a", 3, 1), "box-3": ("b", 2, 1)}


def test_an_unknown_template_is_refused_when_the_key_is_made_naming_the_templates(people, seed):
    alice = people["alice"]
    refused = alice.pair("spaces", "keys", "create", "--name", "ci", "--template", "huge")
    assert_error(refused, "There is no template named 'huge' on this broker.", hint="Its templates: a (default), b.")
    assert keys_of(alice) == {}  # nothing made


def test_a_key_naming_none_is_refused_on_a_broker_with_templates_but_no_default(people, broker: InProcessBroker):
    alice = people["alice"]
    assert admin(broker, "templates", "add", "b", "--compute", "2", "--storage", "1").ok  # no default
    refused = alice.pair("spaces", "keys", "create", "--name", "ci")
    assert_error(refused, "This broker has no default template", hint="Pass --template NAME; its templates: b.")
    assert keys_of(alice) == {}
    assert create_key(alice, "--name", "ci", "--template", "b")


def test_the_quota_holds_for_the_keys_template_and_a_refusal_names_it(people, broker: InProcessBroker, tmp_path, seed):
    alice = people["alice"]
    assert admin(broker, "quota", "set", alice.email, "--compute", "5").ok
    key = create_key(alice, "--name", "ci", "--template", "b")
    assert boot(alice, tmp_path / "c1", "box-1", key).ok
    assert boot(alice, tmp_path / "c2", "box-2", key).ok  # 4 of 5 compute units
    refused = boot(alice, tmp_path / "c3", "box-3", key)
    assert_error(refused, "You are using 4 of 5 compute units; template b needs 2.", hint="pair quota")
    assert sorted(spaces_of(alice)) == ["box-1", "box-2"]  # nothing half-made
    assert keys_of(alice)["ci"]["uses"] == 2


def test_a_template_removed_later_refuses_new_spaces_by_name_and_never_falls_back(
    people, broker: InProcessBroker, tmp_path, seed
):
    """Coder refuses to delete a template workspaces use; here removing one never changes what a
    key's owner chose: a new Space of that key is refused, naming the template (the default is
    not used in its place), until a template of that name is back. Spaces the key made are kept,
    and their containers, rebuilt, still register (a Space keeps what it was made of)."""
    alice = people["alice"]
    key = create_key(alice, "--name", "ci", "--template", "b")
    assert boot(alice, tmp_path / "c1", "box-1", key).ok
    assert admin(broker, "templates", "remove", "b").ok

    refused = boot(alice, tmp_path / "c2", "box-2", key)
    _, hint = assert_error(
        refused, "The Space key \"ci\" makes Spaces from the template 'b', which this broker no longer has."
    )
    assert hint == (
        f"Ask the key's owner ({alice.email}) for a key that names another (`pair spaces keys create --template "
        "NAME`; this broker has a (default)), or an admin to add 'b' again."
    )
    assert sorted(spaces_of(alice)) == ["box-1"] and keys_of(alice)["ci"]["uses"] == 1  # nothing made, not used
    rebuilt = boot(alice, tmp_path / "c1-rebuilt", "box-1", key)  # the Space it made already: no template needed
    assert rebuilt.ok, rebuilt.err
    assert keys_of(alice)["ci"]["template"] == "b"  # the key still says what it was made for
    # ... and that the broker no longer has it (reproduction: the list showed `b` as if all were well)
    assert keys_of(alice)["ci"]["template_removed"] is True
    listed = alice.pair("spaces", "keys", "list")
    assert [line.split()[:3] for line in listed.out.splitlines()][1] == ["ci", "b", "(removed)"]

    assert admin(broker, "templates", "add", "b", "--compute", "1", "--storage", "1").ok
    assert keys_of(alice)["ci"]["template_removed"] is False
    assert alice.pair("spaces", "keys", "list").out.splitlines()[1].split()[:3] == ["ci", "b", "active"]
    assert boot(alice, tmp_path / "c2", "box-2", key).ok
    assert templates_of(broker, alice) == {"box-1": ("b", 2, 1), "box-2": ("b", 1, 1)}


def test_a_key_naming_no_template_is_refused_once_the_broker_has_no_default(
    people, broker: InProcessBroker, tmp_path, seed
):
    alice = people["alice"]
    key = create_key(alice, "--name", "ci")
    assert admin(broker, "templates", "remove", "a").ok  # the default
    refused = boot(alice, tmp_path / "c1", "box-1", key)
    _, hint = assert_error(refused, 'This broker has no default template, and the Space key "ci" names none.')
    assert "`pair spaces keys create --template NAME`; this broker has b)" in hint
    assert spaces_of(alice) == {}
    assert admin(broker, "templates", "remove", "b").ok  # no templates at all: Spaces cost nothing
    assert boot(alice, tmp_path / "c1", "box-1", key).ok
    assert templates_of(broker, alice) == {"box-1": (None, 0, 0)}


def test_init_new_key_makes_a_key_of_the_template_it_names(people, tmp_path, seed):
    alice = people["alice"]
    gh = fake_gh.install(tmp_path / "bin", repo="octo/shop")
    (alice.cwd / "shop").mkdir()
    args = ("spaces", "init", "devcontainer", "--dir", "shop", "--new-key", "--template", "b")
    result = alice.pair(*args, env={"PATH": gh.path()})
    assert result.ok, result.err
    assert keys_of(alice)["octo-shop"]["template"] == "b"
    without = alice.pair("spaces", "init", "devcontainer", "--dir", "shop", "--template", "b", "--no-secret")
    assert_error(without, "--template names what a new key's Spaces are made from.", hint="Add --new-key")
