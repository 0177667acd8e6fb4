"""install.sh's surface on this machine, without installing anything: --help, option and
environment parsing, refusals, and a dry run as an unprivileged user (which cannot change the
system even if the script had a bug). The real installs run in a Debian chroot (test_debian.py)."""

from __future__ import annotations

import base64
import json
import os
import re
import string
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pair.api.models import SpaceTokenClaims
from pair.api.tokens import AUDIENCE, SecretError, normalize, space_key, unverified_claims
from tests.install.conftest import INSTALL_SH, jwt
from tests.install.debian import diff, tree
from tests.support.tools import need_root, need_tool

PREFIX = "/opt/pair-test-never-created"
OPTIONS = ["--token", "--broker-url", "--package", "--ssh-port", "--ssh-user", "--prefix", "--dry-run", "--uninstall"]
ENV_NAMES = [
    "TOKEN",
    "PAIR_SPACE_TOKEN",
    "BROKERURL",
    "PACKAGE",
    "SSHPORT",
    "SSHUSER",
    "PAIR_PREFIX",
    "DRYRUN",
    "UNINSTALL",
]


def sh(
    *args: str, env: dict[str, str] | None = None, as_nobody: bool = False, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    command = ["sh", str(INSTALL_SH), *args]
    if as_nobody:
        command = [need_tool("setpriv"), "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command]
    base = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": str(cwd or "/nonexistent")}
    return subprocess.run(
        command,
        env={**base, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_help_lists_every_option_and_its_environment_variable() -> None:
    result = sh("--help")
    assert result.returncode == 0
    assert result.stdout.startswith("Usage: install.sh [OPTIONS]")
    for word in OPTIONS + ENV_NAMES:
        assert word in result.stdout, word
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--bogus"], {}, "Unknown option: --bogus"),
        (["--token"], {}, "--token needs a value."),
        (["--ssh-port", "0"], {}, "--ssh-port must be between 1 and 65535"),
        (["--ssh-port=70000"], {}, "--ssh-port must be between 1 and 65535"),
        ([], {"SSHPORT": "22; rm -rf /"}, "--ssh-port must be a number"),
        (["--prefix", "opt/pair"], {}, "--prefix must be an absolute path"),
        (["--prefix", "/opt/my pair"], {}, "--prefix must be a plain absolute path"),
        ([], {"PAIR_PREFIX": "/opt/../etc"}, "--prefix must be a plain absolute path"),
        (["--broker-url", "ftp://x"], {}, "--broker-url must start with http:// or https://"),
        ([], {"BROKERURL": "https://x/'\"$(id)"}, "--broker-url has characters a URL should not have"),
        (["--ssh-user", "-oProxyCommand"], {}, "--ssh-user must be a user name"),
        ([], {"DRYRUN": "perhaps"}, 'Expected true or false, got "perhaps".'),
        (["--ssh-port", "02222"], {}, "--ssh-port must be between 1 and 65535, not 02222"),
        (["--package", "broker"], {}, "--package broker needs --broker-url."),
        (["--package", "/nonexistent/pair.whl"], {}, "No such package file: /nonexistent/pair.whl."),
        ([], {"PACKAGE": "pair-spaces==1; id"}, 'Not a requirement: "pair-spaces==1; id"'),
        (["--package", "requests"], {}, "--package must be empty, a version"),
        # Where pair comes from: nothing says, or what says cannot be used.
        ([], {}, "install.sh does not know where to get pair: no --token, --space-key, --broker-url or --package."),
        ([], {"TOKEN": " \t"}, "install.sh does not know where to get pair"),  # blank: no token
        (["--token", "a.b.c"], {}, "The Space token from --token does not name its broker"),
        ([], {"PAIR_SPACE_TOKEN": jwt({"sub": "sp_x"})}, "The Space token from PAIR_SPACE_TOKEN does not name"),
        (
            [],
            {"PAIR_SPACE_TOKEN": jwt({"iss": "ftp://b"})},
            "The broker URL in the Space token from PAIR_SPACE_TOKEN must start with http:// or https://",
        ),
        (
            ["--token", jwt({"iss": "https://b/$(id)"})],
            {},
            'The broker URL in the Space token from --token has characters a URL should not have: "https://b/$(id)".',
        ),
        (  # text from a token reaches the terminal, never as control sequences
            ["--token", jwt('{"iss":"https://b/\x1b[2J"}')],
            {},
            'The broker URL in the Space token from --token has characters a URL should not have: "https://b/?[2J".',
        ),
        ([], {"BROKERURL": "https://b/\x1b[2J"}, '--broker-url has characters a URL should not have: "https://b/?[2J"'),
        ([], {"PAIR_SPACE_KEY": "pair_sk_" + "x" * 40}, "The Space key from PAIR_SPACE_KEY does not name its broker"),
        (
            ["--space-key", space_key("ftp://b", "s" * 43)],
            {},
            "The broker URL in the Space key from --space-key must start with http:// or https://",
        ),
        (["--package", "broker", "--token", "a.b.c"], {}, "The Space token from --token does not name its broker"),
    ],
)
def test_bad_options_are_refused_before_anything_happens(
    args: list[str], env: dict[str, str], message: str, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("runs the script as nobody, which needs root to arrange")
    # As nobody, so that even a bug in the validation could not change this machine.
    prefix = [] if "PAIR_PREFIX" in env else ["--prefix", PREFIX]
    result = sh(*prefix, *args, env=env, as_nobody=True, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert message in result.stderr
    assert result.stderr.startswith("pair: error: ")
    assert not Path(PREFIX).exists()


def test_without_root_it_stops_and_says_what_to_do(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("runs the script as nobody, which needs root to arrange")
    result = sh("--prefix", PREFIX, "--package", "pair-spaces", as_nobody=True, cwd=tmp_path)
    assert result.returncode == 1
    assert "install.sh needs root" in result.stderr
    assert "sudo sh -s --" in result.stderr
    assert not Path(PREFIX).exists()


def test_dry_run_as_nobody_prints_the_plan_and_changes_nothing(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("runs the script as nobody, which needs root to arrange")
    tmp_path.chmod(0o777)
    before = tree(tmp_path)
    env = {"DRYRUN": "true", "TOKEN": "a.b.c", "SSHPORT": "2299", "BROKERURL": "https://pair.example.com"}
    result = sh("--prefix", PREFIX, env=env, as_nobody=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "not root: a real run stops here" in result.stderr
    out = result.stdout
    assert out.startswith("pair: dry run: nothing will be changed\n")
    assert f"would create {PREFIX} (root-owned, 0755)" in out
    assert "port 2299" in out
    assert f"would write {PREFIX}/bootstrap.txt" in out
    assert f"would write {PREFIX}/broker-url" in out
    assert out.endswith("nothing was changed.\n")
    assert diff(before, tree(tmp_path)) == []
    assert not Path(PREFIX).exists()


def test_a_prefix_under_a_world_writable_directory_is_refused() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to get past the root check")
    result = sh("--prefix", "/tmp/pair-test-prefix/pair", "--package", "pair-spaces", "--dry-run")  # dry or not
    assert result.returncode == 1
    assert "/tmp" in result.stderr and "root-owned and not group/world-writable" in result.stderr


# -- the token: judged by pair's own parser, so install.sh accepts what bootstrap accepts -------


def _token() -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header, claims = json.dumps({"alg": "EdDSA", "typ": "JWT"}), json.dumps({"sub": "sp_x", "iss": "http://b"})
    return ".".join((b64(header.encode()), b64(claims.encode()), b64(os.urandom(64))))


def dry_run_with_pair(args: list[str | bytes], env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    """install.sh --dry-run on this machine with pair already in PREFIX/venv (this test venv,
    linked into a root-owned tmpfs in a private mount namespace), so its token check runs."""
    need_root()
    script = (
        'mount -t tmpfs -o mode=755 tmpfs /mnt && mkdir -m 755 /mnt/pair && ln -s "$1" /mnt/pair/venv && shift'
        ' && exec sh "$0" --dry-run --prefix /mnt/pair "$@"'
    )
    venv = str(Path(sys.executable).parent.parent)
    return subprocess.run(
        [need_tool("unshare"), "-m", "--propagation", "private", "sh", "-c", script, str(INSTALL_SH), venv, *args],
        env={"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/nonexistent", **env},
        capture_output=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )


TOKEN = _token()
PASTES: list[tuple[str, str | bytes, str]] = [  # (id, what was pasted, how it reached install.sh)
    ("crlf-file", TOKEN + "\r\n", "--token"),
    ("env-with-newline", TOKEN + "\n", "PAIR_SPACE_TOKEN"),
    ("leading-space", " " + TOKEN, "--token="),
    ("feature-option-quoted", f'"{TOKEN}"', "TOKEN"),
    ("bom", "\ufeff" + TOKEN, "--token"),
    ("utf16-file-via-cat", b"\xff\xfe" + TOKEN.encode() + b"\r\n", "--token"),  # the shell dropped its NULs
    ("space-inside", TOKEN[:50] + " " + TOKEN[50:], "--token"),
    ("auth-key", "pair_ak_" + "x" * 43, "PAIR_SPACE_TOKEN"),
    ("file-name", "SPACE_ID.txt", "--token"),
    ("command-substitution", "a.b.c`reboot`", "--token"),
    ("dollar", "$(id)", "TOKEN"),
]
SOURCES = {
    "--token": "--token",
    "--token=": "--token",
    "TOKEN": "TOKEN (the Feature's token option)",
    "PAIR_SPACE_TOKEN": "PAIR_SPACE_TOKEN",
}


@pytest.mark.parametrize(("pasted", "how"), [p[1:] for p in PASTES], ids=[p[0] for p in PASTES])
def test_install_sh_accepts_exactly_what_bootstrap_accepts(pasted: str | bytes, how: str) -> None:
    """Reproduction: install.sh refused a token with a CR/LF or a leading space that bootstrap
    took, and its hint suggested the very command just run."""
    args: list[str | bytes] = []
    env: dict[str, str] = {}
    if how == "--token":
        args = ["--token", pasted]
    elif how == "--token=":
        args = [b"--token=" + pasted if isinstance(pasted, bytes) else "--token=" + pasted]
    else:
        assert isinstance(pasted, str)
        env = {how: pasted}
    result = dry_run_with_pair(args, env)
    out, err = result.stdout.decode(), result.stderr.decode()
    source = SOURCES[how]
    verdict: str | SecretError
    try:
        verdict = normalize(pasted, source=source)
    except SecretError as refused:
        verdict = refused
    if isinstance(verdict, SecretError):
        assert result.returncode == 1, out
        assert err == f"pair: error: {verdict.message}\npair: hint: {verdict.hint}\n"
        assert "would write /mnt/pair/bootstrap.txt" not in out
    else:
        assert verdict == TOKEN
        assert result.returncode == 0, err
        assert f"pair: ok: the Space token from {source} is well-formed" in out
        assert "would write /mnt/pair/bootstrap.txt" in out
    assert '--token "$(cat SPACE_ID.txt)"' not in err  # the hint never suggests what was just run


def test_a_blank_token_is_no_token_as_for_bootstrap() -> None:
    result = dry_run_with_pair(["--token", " \r\n", "--broker-url", "http://b"], {})
    assert result.returncode == 0, result.stderr
    assert b"bootstrap.txt" not in result.stdout


# -- where pair comes from: the broker the token names, unless an option says otherwise ----------


def dry_run_as_nobody(args: list[str], env: dict[str, str], tmp_path: Path) -> str:
    if os.geteuid() != 0:
        pytest.skip("runs the script as nobody, which needs root to arrange")
    result = sh("--prefix", PREFIX, "--dry-run", *args, env=env, as_nobody=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not Path(PREFIX).exists()
    return result.stdout


BROKER = "https://pair.example.com:8443/team"


@pytest.mark.parametrize(
    ("args", "env", "source"),
    [
        (["--token", jwt({"iss": BROKER, "sub": "sp_x"})], {}, "--token"),
        ([], {"PAIR_SPACE_TOKEN": f' "{jwt({"iss": BROKER + "/"})}"\r\n'}, "PAIR_SPACE_TOKEN"),  # as pasted
        ([], {"TOKEN": "\ufeffPAIR_SPACE_TOKEN=" + jwt({"iss": BROKER})}, "TOKEN (the Feature's token option)"),
        (["--package", "broker", f"--token={jwt({'iss': BROKER})}"], {"PACKAGE": "pair-spaces"}, "--token"),
    ],
)
def test_with_no_package_option_pair_comes_from_the_broker_the_token_names(
    args: list[str], env: dict[str, str], source: str, tmp_path: Path
) -> None:
    """Issue 10: the default package source, for install.sh, the Feature and the Devfile alike."""
    out = dry_run_as_nobody(args, env, tmp_path)
    assert f"pair: pair comes from {BROKER}/download/pair.whl (the broker the Space token from {source} names)\n" in out
    assert f"would install {BROKER}/download/pair.whl and supervisor>=4.2 into {PREFIX}/venv" in out
    assert f"would write {PREFIX}/bootstrap.txt" in out


def test_broker_url_wins_over_the_broker_in_the_token_as_for_bootstrap(tmp_path: Path) -> None:
    out = dry_run_as_nobody(["--token", jwt({"iss": BROKER})], {"BROKERURL": "http://10.0.0.7:8000/"}, tmp_path)
    assert "pair comes from http://10.0.0.7:8000/download/pair.whl (the broker --broker-url names)" in out
    assert f"would write {PREFIX}/broker-url" in out


def test_a_space_key_with_a_broker_url_needs_nothing_else(tmp_path: Path) -> None:
    out = dry_run_as_nobody([], {"PAIR_SPACE_KEY": "pair_sk_" + "x" * 40, "BROKERURL": BROKER}, tmp_path)
    assert f"pair comes from {BROKER}/download/pair.whl (the broker --broker-url names)" in out


def test_given_only_a_space_key_pair_comes_from_the_broker_it_names(tmp_path: Path) -> None:
    key = space_key(BROKER, "s" * 43)
    out = dry_run_as_nobody([], {"PAIR_SPACE_KEY": f"{key}\r\n"}, tmp_path)
    assert f"pair comes from {BROKER}/download/pair.whl (the broker the Space key from PAIR_SPACE_KEY names)" in out
    assert "space-key" not in out  # a secret of the running container: bootstrap reads it there again
    assert key not in out
    kept = dry_run_as_nobody([], {"SPACEKEY": key}, tmp_path)  # the Feature's spaceKey option
    assert "(the broker the Space key from SPACEKEY (the Feature's spaceKey option) names)" in kept
    assert f"would write {PREFIX}/space-key (the Space key, 0600)" in kept
    assert key not in kept


@pytest.mark.parametrize(
    ("package", "source"),
    [
        ("pair-spaces", "pair-spaces (PyPI)"),
        ("0.1.0", "pair-spaces==0.1.0 (PyPI)"),
        ("pair-spaces>=0.1", "pair-spaces>=0.1 (PyPI)"),
    ],
)
def test_pypi_stays_an_option(package: str, source: str, tmp_path: Path) -> None:
    out = dry_run_as_nobody(["--package", package, "--token", jwt({"iss": BROKER})], {}, tmp_path)
    assert f"pair comes from {source}\n" in out


def shell_functions(*names: str) -> str:
    """The text of install.sh's functions `names`, to run on their own (the script defines only
    functions and calls `main` on its last line)."""
    text = INSTALL_SH.read_text()
    found = []
    for name in names:
        match = re.search(rf"^{name}\(\) \{{\n.*?^\}}\n", text, re.MULTILINE | re.DOTALL)
        assert match, name
        found.append(match.group(0))
    return "\n".join(found)


TOKEN_ISSUER = shell_functions("die", "b64url_decode", "jwt_run", "token_issuer") + 'token_issuer "$1"\n'


def issuer_by_install_sh(pasted: str) -> str:
    """What install.sh reads as the token's broker, before pair (and its parser) is installed."""
    done = subprocess.run(
        ["sh", "-c", TOKEN_ISSUER, "sh", pasted],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        timeout=30,
        check=True,
    )
    return done.stdout.decode("utf-8", "surrogateescape").removesuffix("\n")


URL_ALPHABET = string.ascii_letters + string.digits + ".:/_~%-"  # what install.sh lets into a URL
broker_urls = st.builds(
    "{}://{}{}".format,
    st.sampled_from(["http", "https"]),
    st.text(URL_ALPHABET, min_size=1, max_size=30),
    st.sampled_from(["", "/"]),
)
claim_text = st.text(max_size=30) | st.sampled_from(['","iss":"http://evil', '\\"iss\\":\\"http://evil', "\\/", "}"])
PASTES_AROUND: list[Callable[[str], str]] = [
    lambda t: t,
    lambda t: f" {t}\r\n",
    lambda t: f'"{t}"',
    lambda t: f"export PAIR_SPACE_TOKEN='{t}'",
    lambda t: "\ufeff" + t,
    lambda t: f"\x1b[200~{t}\x1b[201~",
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    iss=broker_urls | st.text(max_size=30),
    sub=claim_text,
    jti=claim_text,
    paste=st.sampled_from(PASTES_AROUND),
)
def test_install_sh_reads_the_broker_a_token_names_as_pair_does(
    iss: str, sub: str, jti: str, paste: Callable[[str], str]
) -> None:
    """The one place install.sh decides the broker before pair exists (shell: base64 and sed)
    against pair's own reading (pair.api.tokens) of tokens as the broker writes them (msgspec):
    the same URL for every issuer install.sh could use, and never a different one otherwise."""
    claims = SpaceTokenClaims(iss=iss, aud=AUDIENCE, sub=sub, iat=1, nbf=1, exp=3601, jti=jti)
    pasted = paste(jwt(msgspec.json.encode(claims).decode()))
    by_pair = unverified_claims(pasted)["iss"]
    by_install_sh = issuer_by_install_sh(pasted)
    if re.fullmatch(r"https?://[A-Za-z0-9.:/_~%-]+", iss):
        assert by_install_sh == by_pair == iss
    else:
        assert by_install_sh in ("", by_pair)


def test_uninstall_without_a_working_pair_removes_prefix_and_names_the_rest() -> None:
    """A half-made install (the venv has no pair): nothing can ask pair's installer for a plan."""
    need_root()
    script = (
        "mount -t tmpfs -o mode=755 tmpfs /mnt && mkdir -m 755 -p /mnt/pair/venv"
        " && printf '/usr/local/bin/supervisord\\n' >/mnt/pair/created-by-install.sh"
        ' && sh "$0" --uninstall --dry-run --prefix /mnt/pair && test -d /mnt/pair'
        ' && sh "$0" --uninstall --prefix /mnt/pair && test ! -e /mnt/pair'
    )
    result = subprocess.run(
        [need_tool("unshare"), "-m", "--propagation", "private", "sh", "-c", script, str(INSTALL_SH)],
        env={"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"},
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "pair: dry run: nothing will be changed",
        "pair: would remove /mnt/pair",
        "pair: dry run: 1 change(s) would be made; nothing was changed.",
        "pair: remove /mnt/pair",
    ]
    assert "/usr/local/bin/supervisord" in result.stderr  # what is left to remove by hand
