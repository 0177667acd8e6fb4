"""Whatever a broker sends, the ssh config and known_hosts writers emit only what they mean to:
one `Host` block per Space that fits pair.api.grammar, every value quoted for ssh, and one pinned
`ALIAS TYPE BASE64` line per host key. The real ssh client reads the result back."""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pair import known_hosts
from pair.api.errors import PairError
from pair.api.fields import space_problem
from pair.api.grammar import LOGIN_USER_RE, NAME_RE, SPACE_ID_RE, Invalid, host_key_problem
from pair.api.models import ContainerFacts, Space
from pair.api.refs import host_aliases
from pair.cli import ssh
from pair.cli.ssh_config import render
from tests.support.tools import need_tool

WHEN = datetime(2027, 1, 15, tzinfo=timezone.utc)
OPTIONS = {
    "User",
    "ProxyCommand",
    "HostKeyAlias",
    "UserKnownHostsFile",
    "StrictHostKeyChecking",
    "ServerAliveInterval",
    "ControlPersist",
    "IdentityFile",
    "IdentitiesOnly",
}


def ed25519(seed: int) -> str:
    blob = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes([seed % 256]) * 32
    return "ssh-ed25519 " + base64.b64encode(blob).decode()


KEYS = [ed25519(i) for i in range(3)]
HOSTILE = [
    'x\nMatch exec "touch /tmp/PWNED"\nHost y',  # the Space name
    f"{KEYS[0]}\n@revoked * {KEYS[1]}",  # the host key
    "dev\nHost *\n    ProxyCommand sh -c id",
    "sp_x; touch /tmp/p",
    "$(touch /tmp/p)",
    "%d ${HOME} 'q' \"dq\" #c \\",
    "\x1b]0;TITLE\x07",
    "-oProxyCommand=id",
]
texts = st.one_of(st.text(max_size=40), st.sampled_from(HOSTILE))
space_ids = st.one_of(st.from_regex(SPACE_ID_RE, fullmatch=True), texts)
names = st.one_of(st.from_regex(NAME_RE, fullmatch=True), texts)
users = st.one_of(st.just(""), st.from_regex(LOGIN_USER_RE, fullmatch=True), texts)
owners = st.one_of(st.sampled_from(["alice@example.com", "bob+x@sub.example.org"]), texts)
host_keys = st.lists(st.one_of(st.sampled_from(KEYS), st.sampled_from(KEYS).map(lambda k: k + " root@h"), texts))


@st.composite
def spaces(draw: st.DrawFn) -> list[Space]:
    ids = draw(st.lists(space_ids, max_size=5, unique=True))
    return [
        Space(
            id=sid,
            name=draw(names),
            owner=draw(owners),
            role=draw(st.sampled_from(["owner", "shared"])),
            state="running",
            created_at=WHEN,
            updated_at=WHEN,
            container=ContainerFacts(login_user=draw(users), host_keys=draw(host_keys)),
        )
        for sid in ids
    ]


@contextlib.contextmanager
def config_dir(name: str = "pair config %d #x") -> Iterator[Path]:
    """A PAIR_CONFIG_DIR with characters ssh treats specially, for the duration."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.mkdir()
        saved = os.environ.get("PAIR_CONFIG_DIR")
        os.environ["PAIR_CONFIG_DIR"] = str(path)
        try:
            yield path
        finally:
            if saved is None:
                del os.environ["PAIR_CONFIG_DIR"]
            else:
                os.environ["PAIR_CONFIG_DIR"] = saved


def ssh_g(config: Path, host: str) -> dict[str, str]:
    out = subprocess.run(
        [need_tool("ssh"), "-G", "-F", str(config), host], capture_output=True, text=True, timeout=30, check=False
    )
    assert out.returncode == 0, out.stderr
    return {key: value for key, _, value in (line.partition(" ") for line in out.stdout.splitlines())}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spaces())
def test_the_ssh_config_holds_one_block_per_fitting_space_and_nothing_else(visible: list[Space]) -> None:
    good = [s for s in visible if space_problem(s) is None]
    with config_dir() as directory:
        text = render(visible, host_aliases(visible), created_marker=False)
        blocks = 0
        for line in text.split("\n"):
            if not line or line.startswith("# "):
                continue
            if line.startswith("Host "):
                blocks += 1
                assert all(alias.endswith(".pair") for alias in line.split()[1:]), line
                continue
            key, _, _ = line.strip().partition(" ")
            assert line.startswith("    ") and key in OPTIONS, line
        assert blocks == len(good)
        assert "PWNED" not in text and "@revoked" not in text and "\x1b" not in text

        if good:  # the real ssh client reads back exactly what pair meant
            config = directory / "ssh_config"
            config.write_text(text)
            first = good[0]
            seen = ssh_g(config, f"{first.id}.pair")
            assert seen["user"] == (first.container.login_user if first.container else "") or "root"
            assert seen["hostkeyalias"] == f"{first.id}.pair"
            assert seen["userknownhostsfile"] == str(directory / "known_hosts")
            assert seen["proxycommand"].endswith(f" spaces proxy {first.id}")
            assert "proxycommand" not in ssh_g(config, "elsewhere.example.com")


# A directory name ssh and the shell both read specially: quotes, $, %, #, spaces, backslashes.
dir_names = st.text(
    st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters="/"), min_size=1, max_size=20
).filter(lambda name: name not in (".", "..") and "${" not in name)  # `${`: refused for UserKnownHostsFile


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dir_names)
@example("a\\")  # ssh's argv_split reads `'…a\\'` as an escaped quote: "invalid quotes"
@example("x'\\")
def test_the_proxy_command_carries_a_config_dir_that_is_not_the_default(name: str) -> None:
    with config_dir(name) as directory:
        space = Space(
            id="sp_abc", name="demo", owner="a@example.com", role="owner", state="running",
            created_at=WHEN, updated_at=WHEN,
        )  # fmt: skip
        config = directory / "ssh_config"
        config.write_text(render([space], host_aliases([space]), created_marker=False), encoding="utf-8")
        proxy = ssh_g(config, "demo.pair")["proxycommand"].replace("%%", "%")
        # what the shell ssh hands the line to makes of it: env sets exactly this directory
        words = subprocess.run(
            ["sh", "-c", f"printf '%s\\0' {proxy}"], capture_output=True, text=True, check=True, timeout=30
        ).stdout.split("\0")[:-1]
        assert words[:2] == ["/usr/bin/env", f"PAIR_CONFIG_DIR={directory}"]
        assert words[3:] == ["spaces", "proxy", "sp_abc"]


def test_the_default_config_dir_is_not_repeated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("PAIR_CONFIG_DIR", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    assert ssh.proxy_command("sp_abc")[1:] == ("spaces", "proxy", "sp_abc")


@settings(max_examples=60, deadline=None)
@given(spaces())
def test_known_hosts_pins_only_whole_host_keys_of_fitting_spaces(visible: list[Space]) -> None:
    with config_dir():
        ssh.write_known_hosts(visible)
        lines = known_hosts.path().read_text().splitlines()
    expected = {
        f"{s.id}.pair {key}"
        for s in visible
        if s.container
        and all(host_key_problem(k) is None for k in s.container.host_keys)
        and SPACE_ID_RE.fullmatch(s.id)
        for key in s.container.host_keys
    }
    assert set(lines) == expected
    for line in lines:
        alias, key_type, blob = line.split(" ")
        assert SPACE_ID_RE.fullmatch(alias.removesuffix(".pair"))
        assert host_key_problem(f"{key_type} {blob}") is None


@settings(max_examples=60, deadline=None)
@given(space_ids, st.lists(st.one_of(st.sampled_from(KEYS), texts), max_size=4))
def test_the_proxy_refresh_pins_whole_keys_or_nothing(space_id: str, keys: list[str]) -> None:
    with config_dir():
        known_hosts.write({"sp_other": [f"sp_other.pair {KEYS[2]}"]})
        before = known_hosts.path().read_text()
        try:
            known_hosts.refresh(space_id, keys)
        except Invalid:
            assert known_hosts.path().read_text() == before  # nothing half-written
            return
        lines = known_hosts.path().read_text().splitlines()
    assert lines[0] == f"sp_other.pair {KEYS[2]}"  # another Space's pin is kept
    assert lines[1:] == [f"{space_id}.pair {key}" for key in keys]
    assert SPACE_ID_RE.fullmatch(space_id)


@pytest.mark.parametrize(
    ("key", "value", "written"),
    [
        ("User", "vscode", "vscode"),
        ("UserKnownHostsFile", "/a b/%d/kh", '"/a b/%%d/kh"'),
        ("IdentityFile", '/k/"q"\\x', '"/k/\\"q\\"\\\\x"'),
        ("Include", "/a b/c", '"/a b/c"'),
        ("ProxyCommand", ("/opt/my pair/pair", "spaces", "proxy", "sp_x"), "'/opt/my pair/pair' spaces proxy sp_x"),
        ("ProxyCommand", ("/o/100%/pair", "spaces"), "/o/100%%/pair spaces"),
        ("ControlPath", "none", "none"),
    ],
)
def test_ssh_value(key: str, value: ssh.Value, written: str) -> None:
    assert ssh.ssh_value(key, value) == written


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("UserKnownHostsFile", "/a/${HOME}/kh", "environment variable"),
        ("User", "a\nb", "several lines"),
        ("ProxyCommand", ("/a\nb",), "several lines"),
        ("Include", "/a/*/c", "wildcards"),
    ],
)
def test_what_ssh_cannot_be_told_is_an_error(key: str, value: ssh.Value, why: str) -> None:
    with pytest.raises(PairError) as caught:
        ssh.ssh_value(key, value)
    assert why in caught.value.message


@pytest.mark.parametrize("name", ["with space", "100%", "it's", 'dq"', "hash#", "back\\slash", "eq=ual", "ü"])
def test_every_quoted_path_reads_back_through_the_real_ssh(name: str) -> None:
    with config_dir(name) as directory:
        options = [("UserKnownHostsFile", str(directory / "known_hosts")), ("User", "dev")]
        config = directory / "cfg"
        config.write_text("Host x\n" + "\n".join(ssh.option_line(k, v) for k, v in options) + "\n")
        from_file = ssh_g(config, "x")
        on_command_line = subprocess.run(
            [need_tool("ssh"), "-G", "-F", "/dev/null", *ssh.option_args(options), "x"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    assert from_file["userknownhostsfile"] == str(directory / "known_hosts")
    assert f"userknownhostsfile {directory / 'known_hosts'}\n" in on_command_line


def test_known_hosts_is_rewritten_only_when_its_pins_change() -> None:
    """`connect` writes every visible Space's pins on each run: unchanged, the file (and its fsync)
    is left alone; changed, it is replaced."""
    with config_dir():
        known_hosts.write({"sp_aaa": [f"sp_aaa.pair {KEYS[0]}"]})
        first = known_hosts.path().stat().st_ino
        known_hosts.write({"sp_aaa": [f"sp_aaa.pair {KEYS[0]}"]})
        assert known_hosts.path().stat().st_ino == first  # os.replace would give a new inode
        known_hosts.write({"sp_aaa": [f"sp_aaa.pair {KEYS[1]}"]})
        assert known_hosts.path().stat().st_ino != first
        assert known_hosts.path().read_text() == f"sp_aaa.pair {KEYS[1]}\n"
        known_hosts.path().unlink()
        known_hosts.write({})
        assert known_hosts.path().read_text() == ""  # no pins is a file too
