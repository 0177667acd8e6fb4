"""install.sh asks the broker whether the Space key (or token) would register the container before
it installs anything (POST /api/v1/agent/registration-check, which uses nothing up): a revoked,
expired or spent one is refused at once with the sentence and hint `pair spaces bootstrap` gives,
not after a minute of installing. Against a real broker, through each HTTP client install.sh may
find before pair is installed (this system's python3, else curl).

install.sh runs as nobody, for real (not a dry run): the check comes before the root check, so a
secret the broker refuses stops it there, and a good one reaches the root check and stops there.
Nothing here can install onto this machine. The Debian roots (test_space_key_roots.py) show the
refusal before the install where the image has neither python3 nor curl yet."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pair.api import endpoints as ep
from pair.api.models import ErrorBody
from pair.api.tokens import space_key
from tests.install.conftest import INSTALL_SH
from tests.install.test_install_script import PREFIX, shell_functions
from tests.support.broker import RealBroker, real_broker
from tests.support.people import Person
from tests.support.stores import SqliteBackend
from tests.support.tools import need_root, need_tool

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealBroker]:
    with real_broker(tmp_path_factory.mktemp("broker")) as running:
        yield running


@pytest.fixture(scope="module")
def alice(broker: RealBroker, tmp_path_factory: pytest.TempPathFactory) -> Person:
    return Person(broker, "alice", tmp_path_factory.mktemp("people"), ssh_key=False)


def path_without_python(folder: Path) -> str:
    """A PATH holding every program of this system's but python: install.sh then has curl only."""
    folder.parent.chmod(0o755)
    folder.mkdir()
    for directory in ("/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        for program in Path(directory).iterdir() if Path(directory).is_dir() else []:
            if not program.name.startswith("python") and not (folder / program.name).exists():
                (folder / program.name).symlink_to(program)
    folder.chmod(0o755)
    return str(folder)


@pytest.fixture(params=["python3", "curl"])
def client_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """PATH for install.sh, so that it asks the broker with `request.param`."""
    need_root()  # to run install.sh as nobody
    need_tool("python3" if request.param == "python3" else "curl")
    if request.param == "python3":
        yield "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
        return
    folder = Path(tempfile.mkdtemp(prefix="pair-curl-only-", dir="/var/tmp"))  # nobody may look in
    try:
        yield path_without_python(folder / "bin")
    finally:
        shutil.rmtree(folder)


def install_sh(path: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """A real install.sh run as nobody (PREFIX never created)."""
    result = subprocess.run(
        [
            need_tool("setpriv"),
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "sh",
            str(INSTALL_SH),
            "--prefix",
            PREFIX,
            *args,
        ],
        env={"PATH": path, "HOME": "/nonexistent", **env},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert not Path(PREFIX).exists()
    return result


def bootstrap_says(person: Person, home: Path, env: dict[str, str], *args: str) -> str:
    """What `pair spaces bootstrap` prints when it refuses, as install.sh prints it (`pair: ` first)."""
    refused = person.pair("spaces", "bootstrap", *args, env={"PAIR_HOME": str(home), **env})
    assert refused.returncode == 1, refused.stdout
    assert refused.stderr.startswith("error: "), refused.stderr
    return "".join(f"pair: {line}\n" for line in refused.stderr.splitlines())


def test_a_dead_key_or_token_is_refused_before_the_install_with_bootstrap_s_sentence(
    broker: RealBroker, alice: Person, client_path: str, tmp_path: Path
) -> None:
    """Reproduction: install.sh with a revoked or expired key ran its whole install (~50 s) before
    bootstrap said so."""
    revoked = alice.ok("spaces", "keys", "create", "--name", f"gone-{tmp_path.name}").strip()
    alice.ok("spaces", "keys", "revoke", f"gone-{tmp_path.name}")
    late = alice.ok("spaces", "keys", "create", "--name", f"late-{tmp_path.name}", "--expires", "1h").strip()
    past = int(time.time()) - 60
    SqliteBackend(broker.data_dir).execute(
        f"UPDATE space_keys SET expires_at = {past} WHERE name = 'late-{tmp_path.name}'"
    )
    alice.ok("spaces", "authorize", "--no-share", "--name", f"gone-{tmp_path.name}", "--output", "gone.txt")
    alice.ok("spaces", "delete", f"gone-{tmp_path.name}", "--yes")
    deleted_token = (alice.dir / "gone.txt").read_text().strip()
    alice.ok("spaces", "authorize", "--no-share", "--name", f"box-{tmp_path.name}", "--output", "new.txt")
    alice.ok("spaces", "authorize", "--no-share", "--name", f"used-{tmp_path.name}", "--output", "used.txt")
    used_token = (alice.dir / "used.txt").read_text().strip()
    alice.ok("spaces", "bootstrap", used_token, env={"PAIR_HOME": str(tmp_path / "first-container")})

    cases = [  # (how install.sh gets the secret, and the same for bootstrap)
        ({"PAIR_SPACE_KEY": revoked}, (), 'The Space key "gone-'),
        ({"PAIR_SPACE_KEY": f" {late}\r\n"}, (), 'The Space key "late-'),  # as pasted
        ({"SPACEKEY": late}, ("--key", late), 'The Space key "late-'),  # the Feature's option
        ({"PAIR_SPACE_TOKEN": deleted_token}, (), f'The Space "gone-{tmp_path.name}" was deleted.'),
        ({"TOKEN": used_token}, (used_token,), 'That token already bootstrapped another container as "used-'),
    ]
    for number, (env, args, sentence) in enumerate(cases):
        result = install_sh(client_path, env)
        says = bootstrap_says(
            alice, tmp_path / f"container-{number}", {k: v for k, v in env.items() if k.startswith("PAIR_")}, *args
        )
        assert says.startswith(f"pair: error: {sentence}"), says
        assert (result.returncode, result.stderr) == (1, says), result.stdout
        assert "pair: pair comes from" not in result.stdout  # it stopped before the install's first step

    # A good key and a fresh token pass (and then the root check stops this run as nobody).
    good = alice.ok("spaces", "keys", "create", "--name", f"good-{tmp_path.name}").strip()
    result = install_sh(client_path, {"PAIR_SPACE_KEY": good})
    assert (
        f'pair: ok: {broker.url} accepts the Space key from PAIR_SPACE_KEY ("good-{tmp_path.name}" of {alice.email})'
        in result.stdout
    )
    assert "install.sh needs root" in result.stderr
    fresh = (alice.dir / "new.txt").read_text().strip()
    result = install_sh(client_path, {}, "--token", fresh)
    assert f'accepts the Space token from --token ("box-{tmp_path.name}" of {alice.email})' in result.stdout
    assert "install.sh needs root" in result.stderr
    # Nothing was used up: the good key has no use, and the token still bootstraps.
    assert '"uses": 0' in alice.ok("spaces", "keys", "list", "--json").split(f'"good-{tmp_path.name}"')[1].split("}")[0]
    alice.ok("spaces", "bootstrap", fresh, env={"PAIR_HOME": str(tmp_path / "fresh-container")})
    for text in (result.stdout, result.stderr):
        assert good.split(".")[1] not in text and fresh.split(".")[2] not in text


def test_a_broker_that_cannot_answer_leaves_the_secret_to_bootstrap(client_path: str) -> None:
    """Only a refusal stops the install: a broker down (or older than the check) is bootstrap's to judge."""
    key = space_key("http://127.0.0.1:1", "s" * 43)
    result = install_sh(client_path, {"PAIR_SPACE_KEY": key})
    assert (
        "pair: warning: could not ask http://127.0.0.1:1 whether it accepts the Space key from PAIR_SPACE_KEY ("
        in result.stderr
    )
    assert "install.sh needs root" in result.stderr  # it went on


def test_install_sh_asks_the_endpoint_pair_api_names() -> None:
    assert f"REGISTRATION_CHECK={ep.CHECK_REGISTRATION.path} " in INSTALL_SH.read_text()


JSON_FIELD = shell_functions("json_field") + 'json_field "$1"\n'


def printable(text: str) -> str:
    """install.sh's `printable`: every byte outside ' '..'~' becomes '?'."""
    return "".join(chr(b) if 0x20 <= b <= 0x7E else "?" for b in text.encode())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=st.text(max_size=60), detail=st.text(max_size=60))
def test_install_sh_reads_the_broker_s_sentence_as_the_broker_wrote_it(message: str, detail: str) -> None:
    """The one place install.sh reads the broker's answer (shell: sed), against msgspec's JSON of
    any sentence: the text itself, with only the escapes \\" \\\\ \\/ undone (any other stays as
    written, visible), whatever the other fields hold."""
    body = msgspec.json.encode(ErrorBody(message=message, detail=detail, code="space_key_revoked"))
    for name, text in (("message", message), ("detail", detail)):
        done = subprocess.run(
            ["sh", "-c", JSON_FIELD, "sh", name], input=body, capture_output=True, timeout=30, check=True
        )
        escaped = msgspec.json.encode(text).decode()[1:-1]
        expected = re.sub(r'\\(["\\/])', r"\1", escaped)
        assert printable(done.stdout.decode("utf-8", "surrogateescape").removesuffix("\n")) == printable(expected)
