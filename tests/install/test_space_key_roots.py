"""Reusable Space keys for real: real Debian roots as containers, install.sh, supervisord, sshd,
the agent and the relay, against a real broker.

One "image" is built the way a Codespace's is: install.sh given nothing but the Space key (the
Codespaces secret PAIR_SPACE_KEY), so pair comes from the broker the key names. Containers are
fresh overlays on that image, as containers are of theirs; each starts supervisord and
bootstraps with the key and its CODESPACE_NAME (and re-runs install.sh for an sshd port of its
own: the roots share this machine's network; the second as an older project has it: an older
install.sh's supervisord link, upgraded, and pair's older postStartCommand, which hands supervisord
the secret). Then: two containers, two Spaces named after them,
shared as the key says; a rebuild is the same Space; a revoked key, and a key past its expiry,
turn a new container away (install.sh before it installs anything, also in a bare Debian that first
needs python3 to ask with; bootstrap in an image that has pair); the keys are in no file and no
log. The real broker's clock is this machine's, so the expired key is made as its owner makes one
(`--expires 1h`) and then has its expiry moved into the past in the broker's database, as an hour
passing would.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pair.container.configs import START_SUPERVISORD
from tests.install.conftest import INSTALL_SH
from tests.install.debian import CACHE, Chroot, base_root, diff
from tests.support.broker import real_broker
from tests.support.container import eventually, free_port
from tests.support.people import Person
from tests.support.stores import SqliteBackend
from tests.support.tools import need_root

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

BINDS = {"/root/.cache/pip": CACHE / "pip-cache", "/var/cache/apt/archives": CACHE / "apt-archives"}


@contextmanager
def root(work: Path, lower: str) -> Iterator[Chroot]:
    """A Debian root whose lower layers are `lower` (overlayfs `lowerdir`: upper-most first)."""
    chroot = Chroot(Path(lower), work)
    (CACHE / "apt-archives" / "partial").mkdir(parents=True, exist_ok=True)
    chroot.start(binds=BINDS)
    try:
        yield chroot
    finally:
        chroot.stop()


def install(chroot: Chroot, key: str, port: int) -> subprocess.CompletedProcess[str]:
    where = chroot.path("/tmp/install.sh")
    where.write_bytes(INSTALL_SH.read_bytes())
    return chroot.run("sh", "/tmp/install.sh", "--ssh-port", str(port), env={"PAIR_SPACE_KEY": key}, timeout=600)


# pair's postStartCommand before START_SUPERVISORD, still in projects' devcontainer.json files and
# Devfiles: supervisord gets the lifecycle command's whole environment, the secret with it.
OLDER_START_SUPERVISORD = "supervisord -c /etc/supervisor/supervisord.conf"


def start_container(
    chroot: Chroot, key: str, name: str, start: str = START_SUPERVISORD
) -> subprocess.CompletedProcess[str]:
    """What a Codespace does on its own: re-run install.sh (here: an sshd port of its own), then
    postStartCommand (`start`) and postAttachCommand with the secret and CODESPACE_NAME in the
    environment."""
    installed = install(chroot, key, free_port())
    assert installed.returncode == 0, installed.stderr
    env = {"PAIR_SPACE_KEY": key, "CODESPACE_NAME": name}
    chroot.ok("sh", "-c", start, env=env)
    booted = chroot.run("/opt/pair/pair", "spaces", "bootstrap", env=env)
    # After bootstrap nothing pair started carries the key: supervisord, sshd, the agent (any
    # process in the container can otherwise read it from /proc/PID/environ as its user can).
    for program in ("supervisord", "sshd -D", "pair agent"):  # what the check below reads
        eventually(lambda: running(chroot, program), f"{program} runs in the container")  # noqa: B023
    assert carrying(chroot, key) == [], f"a process pair started carries PAIR_SPACE_KEY (started with {start!r})"
    return booted


def running(chroot: Chroot, program: str) -> bool:
    """Whether a process of the container runs `program` (its command line names it)."""
    for pid in chroot.processes():
        try:
            if program.encode() in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" "):
                return True
        except OSError:
            continue
    return False


def carrying(chroot: Chroot, secret: str) -> list[str]:
    """The command lines of the container's processes whose environment holds `secret`."""
    found = []
    for pid in chroot.processes():
        try:
            if secret.encode() in Path(f"/proc/{pid}/environ").read_bytes():
                found.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue  # ended meanwhile
    return found


def space_ids(person: Person) -> dict[str, str]:
    return {str(s["name"]): str(s["id"]) for s in person.spaces()}


def contains(folder: Path, secret: str) -> list[str]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if secret.encode() in path.read_bytes():
                    found.append(str(path))
            except OSError:
                continue
    return found


def wait_running(person: Person, space: str) -> None:
    eventually(lambda: person.state(space) == "running", f"{space} is running")


def connect(person: Person, space: str) -> str:
    result = person.pair("spaces", "connect", space, "--", "cat", "/etc/pair-container")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_one_key_two_containers_a_rebuild_and_a_revoked_or_expired_key(tmp_path: Path) -> None:
    need_root()
    env = {"PAIR_BROKER_AGENT_INTERVAL": "0.5"}
    with real_broker(tmp_path / "broker", env=env) as broker:
        alice, bob, carol = (Person(broker, name, tmp_path / "people") for name in ("alice", "bob", "carol"))
        created = alice.pair("spaces", "keys", "create", "--name", "shop", "--user", bob.email)
        assert created.returncode == 0, created.stderr
        key = created.stdout.strip()
        secret = key.split(".")[1]

        # The image: install.sh given only the key.
        image = tmp_path / "image"
        with root(image, str(base_root())) as building:
            built = install(building, key, 2222)
            assert built.returncode == 0, built.stderr
            wheel = f"{broker.url}/download/pair.whl"
            assert f"pair comes from {wheel} (the broker the Space key from PAIR_SPACE_KEY names)" in built.stdout
            assert not building.path("/opt/pair/space-key").exists()  # the secret is the container's, not the image's
        lower = f"{image / 'upper'}:{base_root()}"

        outputs = [built.stdout + built.stderr]
        with root(tmp_path / "c1", lower) as c1, root(tmp_path / "c2", lower) as c2:
            # c2 as an older project has it: an install.sh from before the supervisord launcher
            # linked supervisord into /usr/local/bin, and the older postStartCommand starts it.
            # Re-running install.sh (as start_container does) is the upgrade.
            older = c2.path("/usr/local/bin/supervisord")
            older.unlink()
            older.symlink_to("/opt/pair/venv/bin/supervisord")
            for chroot, name, start in ((c1, "shop-c1", START_SUPERVISORD), (c2, "shop-c2", OLDER_START_SUPERVISORD)):
                chroot.path("/etc/pair-container").write_text(f"{name}\n")
                booted = start_container(chroot, key, name, start)
                outputs.append(booted.stdout + booted.stderr)
                assert booted.returncode == 0, booted.stderr
                assert booted.stdout.startswith(f'Bootstrapped this container as the Space "{name}"')
            first = space_ids(alice)
            assert set(first) == {"shop-c1", "shop-c2"}
            assert space_ids(bob) == first  # shared as the key says
            assert space_ids(carol) == {}
            for name in first:
                wait_running(alice, name)
                assert connect(bob, name) == name
            for chroot in (c1, c2):
                assert contains(chroot.upper, secret) == []

        # c1 rebuilt: a new container from the image, with the same name.
        with root(tmp_path / "c1-rebuilt", lower) as rebuilt:
            rebuilt.path("/etc/pair-container").write_text("shop-c1 rebuilt\n")
            booted = start_container(rebuilt, key, "shop-c1")
            outputs.append(booted.stdout + booted.stderr)
            assert booted.returncode == 0, booted.stderr
            assert space_ids(alice) == first  # the same Space, no new one
            wait_running(alice, "shop-c1")
            assert connect(bob, "shop-c1") == "shop-c1 rebuilt"
            assert contains(rebuilt.upper, secret) == []

            revoked = alice.pair("spaces", "keys", "revoke", "shop")
            assert revoked.returncode == 0, revoked.stderr
            with root(tmp_path / "c3", lower) as c3:
                # install.sh asks the broker first: refused at once, before it changes anything.
                before = c3.changes()
                installed = install(c3, key, free_port())
                outputs.append(installed.stdout + installed.stderr)
                assert installed.returncode == 1, installed.stdout
                assert installed.stderr.startswith('pair: error: The Space key "shop" was revoked at ')
                assert f"pair: hint: Ask its owner ({alice.email}) for a new key" in installed.stderr
                changed = diff(before, c3.changes())
                assert [d for d in changed if d[2:] not in ("tmp", "tmp/install.sh")] == [], changed
                # A container whose image has pair already (a Codespace: the Feature ran at build
                # time) hears the same from bootstrap.
                env = {"PAIR_SPACE_KEY": key, "CODESPACE_NAME": "shop-c3"}
                c3.ok("sh", "-c", START_SUPERVISORD, env=env)
                refused = c3.run("/opt/pair/pair", "spaces", "bootstrap", env=env)
                outputs.append(refused.stdout + refused.stderr)
                assert refused.returncode == 1
                assert 'error: The Space key "shop" was revoked at ' in refused.stderr
                assert "it registers no new containers" in refused.stderr
                assert f"hint: Ask its owner ({alice.email}) for a new key" in refused.stderr
                assert "shop-c3" not in space_ids(alice)
                assert contains(c3.upper, secret) == []
            # The rebuilt container keeps its Space: it holds a credential, not the key.
            assert connect(bob, "shop-c1") == "shop-c1 rebuilt"

        late = alice.pair("spaces", "keys", "create", "--name", "late", "--expires", "1h")
        assert late.returncode == 0, late.stderr
        late_key = late.stdout.strip()
        past = int(time.time()) - 60
        SqliteBackend(broker.data_dir).execute(f"UPDATE space_keys SET expires_at = {past} WHERE name = 'late'")
        # A bare Debian (no python3, no curl: nothing to ask the broker with) with the expired key:
        # install.sh asks once the distribution's python3 is in, and stops before pair's virtualenv.
        with root(tmp_path / "c4", str(base_root())) as c4:
            refused = install(c4, late_key, free_port())
            outputs.append(refused.stdout + refused.stderr)
            assert refused.returncode == 1
            assert 'pair: error: The Space key "late" expired at ' in refused.stderr  # after apt's own lines
            assert "it registers no new containers" in refused.stderr
            assert f"pair: hint: Ask its owner ({alice.email}) for a new key" in refused.stderr
            assert "pair: install python3 python3-venv openssh-server with apt" in refused.stdout
            assert not c4.path("/opt/pair").exists()
            assert "shop-c4" not in space_ids(alice)
            assert contains(c4.upper, late_key.split(".")[1]) == []

        listed = alice.ok("spaces", "keys", "list")
        assert "shop  (default)  revoked  3" in listed  # the default template; three registrations: c1, c2, c1 rebuilt
        assert "late  (default)  expired  0" in listed
        for text in [*outputs, broker.output.text(), created.stderr, late.stderr, listed]:
            assert secret not in text and late_key.split(".")[1] not in text
        assert contains(image / "upper", secret) == []
        assert contains(broker.data_dir, secret) == []
        shutil.rmtree(image, ignore_errors=True)
