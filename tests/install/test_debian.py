"""install.sh end to end in a real Debian 12 root (debootstrap, cached), against a real broker.

The root starts as minimal as a container image gets: no Python, no sshd. install.sh installs
them, pair (from a wheel built from this checkout) and its configs; the container then does what
the seed's .devcontainer.json does (postStartCommand, postAttachCommand), and people ssh in.
"""

from __future__ import annotations

import os
import stat
import time
import urllib.request
from pathlib import Path

import msgspec
import pytest

import pair
from broker.signing import Keyring
from pair import verify
from pair.api.models import SpaceTokenClaims
from pair.api.tokens import unverified_claims
from pair.container import configs
from tests.install.conftest import INSTALL_SH, jwt
from tests.install.debian import Chroot, debian, diff
from tests.support.broker import RealBroker, real_broker
from tests.support.container import eventually, free_port
from tests.support.people import Person
from tests.support.tools import need_root

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

CONF = "/etc/supervisor/supervisord.conf"
INSTALLED = [
    "/opt/pair/pair",
    "/opt/pair/venv/bin/python",
    "/opt/pair/sshd/ssh_host_ed25519_key",
    "/etc/ssh/pair_sshd_config",
    CONF,
    "/etc/supervisor/conf.d/pair.conf",
    "/usr/local/bin/supervisord",
    "/usr/local/bin/supervisorctl",
]


def copy_in(chroot: Chroot, *files: Path) -> str:
    """Copy files into /tmp/pair-install in the root; returns that directory (as seen inside)."""
    folder = chroot.path("/tmp/pair-install")
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        (folder / f.name).write_bytes(f.read_bytes())
    return "/tmp/pair-install"


def served_install_sh(url: str) -> str:
    with urllib.request.urlopen(f"{url}/install.sh", timeout=10) as response:
        script = bytes(response.read())
    assert script == INSTALL_SH.read_bytes()
    return script.decode()


def shadow_field(chroot: Chroot, user: str) -> str:
    for line in chroot.path("/etc/shadow").read_text().splitlines():
        name, field = line.split(":")[:2]
        if name == user:
            return field
    raise AssertionError(f"no {user} in /etc/shadow")


def test_dry_run_on_a_bare_root_plans_everything_and_changes_nothing(tmp_path: Path) -> None:
    need_root()
    with debian(tmp_path / "root") as chroot:
        where = copy_in(chroot, INSTALL_SH)
        before = chroot.changes()
        token = jwt({"iss": "https://pair.example.com", "sub": "sp_x"})
        result = chroot.run("sh", f"{where}/install.sh", "--dry-run", "--token", token)
        assert result.returncode == 0, result.stderr
        assert diff(before, chroot.changes()) == []
        out = result.stdout
        # Nothing of pair is here yet: the shell's own steps, then an outline of pair's installer.
        assert "pair comes from https://pair.example.com/download/pair.whl (the broker the Space token" in out
        assert "would install python3 python3-venv openssh-server with apt" in out
        assert "would create /opt/pair (root-owned, 0755)" in out
        assert "would install https://pair.example.com/download/pair.whl and supervisor>=4.2 into" in out
        assert "would write /etc/ssh/pair_sshd_config" in out
        assert "would make sure root can log in with a key" in out
        assert "would write /opt/pair/bootstrap.txt" in out
        assert "nothing was changed" in out
        nobody = chroot.run("sh", f"{where}/install.sh", "--dry-run", "--token", token, "--ssh-user", "ghost")
        assert "there is no user ghost (a real run stops here)" in nobody.stderr
        assert diff(before, chroot.changes()) == []


def expired_token(broker: RealBroker, token: str) -> str:
    """The same Space's token as if issued two hours ago, signed by the broker's own key."""
    keyring = Keyring(broker.data_dir / "signing-keys", retain_seconds=86400)
    keyring.load()
    claims = msgspec.convert(unverified_claims(token), SpaceTokenClaims)
    past = int(time.time()) - 7200
    expired = msgspec.structs.replace(claims, iat=past, nbf=past, exp=past + 3600, jti=f"expired-{claims.jti}")
    return keyring.sign(expired)


def test_install_twice_bootstrap_ssh_in_and_uninstall(tmp_path: Path, repo_wheel: Path) -> None:
    need_root()
    port = free_port()
    env = {"PAIR_BROKER_AGENT_INTERVAL": "0.5"}
    with real_broker(tmp_path / "broker", env=env) as broker, debian(tmp_path / "root") as chroot:
        alice, bob, carol = (Person(broker, name, tmp_path / "people") for name in ("alice", "bob", "carol"))
        alice.ok("spaces", "authorize", "--user", bob.email, "--name", "demo")
        token = (alice.dir / "SPACE_ID.txt").read_text().strip()

        where = copy_in(chroot, INSTALL_SH, repo_wheel)
        chroot.ok("usermod", "-p", "!", "root")  # locked, as `useradd` leaves an account
        pasted = f" {token}\r\n"  # `--token "$(cat SPACE_ID.txt)"` of a file saved on Windows, copied with a space
        args = ["--package", f"{where}/{repo_wheel.name}", "--token", pasted, "--ssh-port", str(port)]

        # As `curl -fsSL BROKER/install.sh | sh`: the script arrives on stdin, so it must never read stdin.
        first = chroot.run("sh", "-s", "--", *args, input=served_install_sh(broker.url))
        assert first.returncode == 0, f"{first.stdout}\n{first.stderr}"
        assert "pair is installed in /opt/pair" in first.stdout
        assert 'unlock root for key logins (its password field "!" becomes "*"' in first.stdout
        check_installed(chroot, port, token)

        before = chroot.changes()
        second = chroot.run("sh", f"{where}/install.sh", *args)
        assert second.returncode == 0, second.stderr
        assert "pair is already installed in /opt/pair; nothing to change." in second.stdout
        assert diff(before, chroot.changes()) == []
        dry = chroot.run("sh", f"{where}/install.sh", "--dry-run", *args)
        assert "dry run: 0 change(s) would be made" in dry.stdout, dry.stdout
        assert diff(before, chroot.changes()) == []
        wrong = [*args[:2], "--token", alice.key_file.read_text(), *args[4:]]  # the auth key, not the token
        refused = chroot.run("sh", f"{where}/install.sh", *wrong)
        assert refused.returncode == 1
        assert (
            "pair: error: The Space token from --token is not usable: it is an auth key (pair_ak_…)" in refused.stderr
        )
        assert diff(before, chroot.changes()) == []

        # The login user, judged by pair's installer now that pair is here (dry runs: nothing changes).
        chroot.ok("useradd", "-p", "!locked", "fed")  # as Fedora images have it
        chroot.ok("useradd", "-p", "!$6$salt$hash", "dev")  # a real password, locked by its owner
        users = chroot.changes()
        fed = chroot.run("sh", f"{where}/install.sh", "--dry-run", *args, "--ssh-user", "fed")
        assert 'would unlock fed for key logins (its password field "!locked" becomes "*"' in fed.stdout, fed.stdout
        locked = chroot.run("sh", f"{where}/install.sh", "--dry-run", *args, "--ssh-user", "dev")
        assert "dev has a locked password" in locked.stderr and "would unlock" not in locked.stdout
        assert diff(users, chroot.changes()) == []

        # postStartCommand, then postAttachCommand (which finds the token install.sh kept).
        chroot.ok("sh", "-c", f"supervisord -c {CONF}")
        sshd_log = chroot.path("/var/log/supervisor/pair-sshd.log")
        eventually(lambda: sshd_log.exists() and "Server listening" in sshd_log.read_text(), "sshd listens")
        booted = chroot.run("/opt/pair/pair", "spaces", "bootstrap")
        assert booted.returncode == 0, booted.stderr
        assert '"demo"' in booted.stdout
        assert not chroot.path("/opt/pair/bootstrap.txt").exists()  # used once, then forgotten

        eventually(lambda: alice.state("demo") == "running", "the Space is running")
        snapshot = chroot.path("/opt/pair/authorized_keys")
        eventually(
            lambda: (
                snapshot.exists()
                and {email for _, email, _ in verify.entries(snapshot.read_text())} == {alice.email, bob.email}
            ),
            "the agent wrote alice's and bob's keys",
        )
        host_key = " ".join(chroot.path("/opt/pair/sshd/ssh_host_ed25519_key.pub").read_text().split()[:2])
        for person in (alice, bob):
            inside = person.ssh(port, host_key, "echo", "hello from", "$(whoami)", "on", "$(cat /etc/debian_version)")
            assert inside.returncode == 0, inside.stderr
            assert inside.stdout.startswith("hello from root on 12.")
        refused = carol.ssh(port, host_key, "true")
        assert refused.returncode == 255
        assert "Permission denied (publickey)" in refused.stderr

        # An hour later the attach command runs again, with the (now expired) token: still fine.
        expired = expired_token(broker, token)
        attach = chroot.run("/opt/pair/pair", "spaces", "bootstrap", expired)
        assert attach.returncode == 0, attach.stderr
        assert attach.stdout.startswith('This container is already the Space "demo"')

        alice.ok("spaces", "unshare", "--space", "demo", bob.email)
        eventually(lambda: bob.ssh(port, host_key, "true").returncode == 255, "bob is refused after unshare")
        assert alice.ssh(port, host_key, "true").returncode == 0

        supervisord_pid = int(chroot.path("/run/supervisord.pid").read_text())  # /var/run links to /run
        removed = chroot.run("sh", f"{where}/install.sh", "--uninstall")
        assert removed.returncode == 0, removed.stderr
        assert "stop supervisord" in removed.stdout
        eventually(lambda: not Path(f"/proc/{supervisord_pid}").exists(), "supervisord stopped")
        for path in [*INSTALLED, "/opt/pair", "/etc/supervisor", "/var/log/supervisor"]:
            assert not os.path.lexists(chroot.path(path)), path
        assert chroot.path("/usr/sbin/sshd").exists()  # the OS packages stay
        again = chroot.run("sh", f"{where}/install.sh", "--uninstall")
        assert "pair is not installed in /opt/pair; nothing to remove." in again.stdout


def test_given_only_a_token_it_installs_pair_from_the_broker_the_token_names(tmp_path: Path) -> None:
    """curl -fsSL BROKER/install.sh | sh -s -- --token "$(cat SPACE_ID.txt)": the default package
    source of install.sh, the Feature and the Devfile is the broker that issued the token."""
    need_root()
    with real_broker(tmp_path / "broker") as broker, debian(tmp_path / "root") as chroot:
        alice = Person(broker, "alice", tmp_path / "people")
        alice.ok("spaces", "authorize", "--no-share", "--name", "demo")
        token = (alice.dir / "SPACE_ID.txt").read_text().strip()
        port = str(free_port())
        first = chroot.run(
            "sh", "-s", "--", "--ssh-port", port, env={"PAIR_SPACE_TOKEN": token}, input=served_install_sh(broker.url)
        )
        assert first.returncode == 0, f"{first.stdout}\n{first.stderr}"
        wheel = f"{broker.url}/download/pair.whl"
        assert f"pair comes from {wheel} (the broker the Space token from PAIR_SPACE_TOKEN names)" in first.stdout
        assert f"install {wheel} into /opt/pair/venv" in first.stdout
        version = chroot.ok("/opt/pair/pair", "--version")
        assert version == f"pair {pair.__version__}\n"
        assert chroot.path("/opt/pair/bootstrap.txt").read_text() == token + "\n"
        assert not chroot.path("/opt/pair/broker-url").exists()  # the token names it; bootstrap reads it there

        # The same broker named outright: the same wheel, so nothing to reinstall.
        args = ["--package", "broker", "--broker-url", broker.url, "--ssh-port", port]
        again = chroot.run("sh", "-s", "--", *args, input=served_install_sh(broker.url))
        assert again.returncode == 0, again.stderr
        assert f"ok: pair-spaces {pair.__version__} from {wheel}" in again.stdout
        assert chroot.path("/opt/pair/broker-url").read_text() == f"{broker.url}\n"
        third = chroot.run("sh", "-s", "--", *args, input=served_install_sh(broker.url))
        assert "pair is already installed in /opt/pair; nothing to change." in third.stdout


def check_installed(chroot: Chroot, port: int, token: str) -> None:
    for path in INSTALLED:
        assert os.path.lexists(chroot.path(path)), path
    # A link resolves inside the root, not through /proc; supervisord is the launcher that drops the secrets.
    assert os.readlink(chroot.path("/usr/local/bin/supervisorctl")) == "/opt/pair/venv/bin/supervisorctl"
    supervisord = chroot.path("/usr/local/bin/supervisord")
    assert supervisord.read_text() == configs.supervisord_launcher("/opt/pair/venv/bin/supervisord")
    assert stat.S_IMODE(supervisord.stat().st_mode) == 0o755
    prefix = chroot.path("/opt/pair").stat()
    assert (prefix.st_uid, stat.S_IMODE(prefix.st_mode)) == (0, 0o755)
    launcher = chroot.path("/opt/pair/pair").stat()
    assert (launcher.st_uid, stat.S_IMODE(launcher.st_mode)) == (0, 0o755)
    kept = chroot.path("/opt/pair/bootstrap.txt")
    assert kept.read_text() == token + "\n"  # as pair's parser normalized it
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert chroot.path("/run/sshd").is_dir()
    assert chroot.path("/opt/pair/ssh-port").read_text() == f"{port}\n"  # the agent dials sshd there
    # The exact text the package renders: install.sh writes what the tests of configs check.
    assert chroot.path("/etc/ssh/pair_sshd_config").read_text() == configs.sshd_config("/opt/pair", port)
    assert chroot.path(CONF).read_text() == configs.supervisord_conf("/etc/supervisor/conf.d")
    assert chroot.path("/etc/supervisor/conf.d/pair.conf").read_text() == configs.programs(
        "/opt/pair", "/etc/ssh/pair_sshd_config", sshd="/usr/sbin/sshd"
    )
    assert shadow_field(chroot, "root") == "*"
    assert chroot.ok("/opt/pair/pair", "--version").startswith("pair ")
    chroot.ok("/usr/sbin/sshd", "-t", "-f", "/etc/ssh/pair_sshd_config")
