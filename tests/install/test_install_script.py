"""install.sh's surface on this machine, without installing anything: --help, option and
environment parsing, refusals, and a dry run as an unprivileged user (which cannot change the
system even if the script had a bug). The real installs run in a Debian chroot (test_debian.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.install.conftest import INSTALL_SH
from tests.install.debian import diff, tree
from tests.support.tools import need_tool

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
        (["--token", "a.b.c`reboot`"], {}, "The token is not a Space token"),
        ([], {"PAIR_SPACE_TOKEN": "$(id)"}, "The token is not a Space token"),
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
