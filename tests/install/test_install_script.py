"""install.sh's surface on this machine, without installing anything: --help, option and
environment parsing, refusals, and a dry run as an unprivileged user (which cannot change the
system even if the script had a bug). The real installs run in a Debian chroot (test_debian.py)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pair.api.tokens import SecretError, normalize
from tests.install.conftest import INSTALL_SH
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
    result = sh("--prefix", PREFIX, as_nobody=True, cwd=tmp_path)
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
    result = sh("--prefix", "/tmp/pair-test-prefix/pair", "--dry-run")  # refused before any step, dry or not
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
    result = dry_run_with_pair(["--token", " \r\n"], {})
    assert result.returncode == 0, result.stderr
    assert b"bootstrap.txt" not in result.stdout
