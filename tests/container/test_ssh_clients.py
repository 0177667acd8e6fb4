"""Real SSH clients against a real Space through the relay, the way people set them up: a config
directory with odd characters, ControlPersist in their ssh config, a rebuilt container, Ctrl-C and
SIGTERM, a key that is not ssh's default, a broker restart under an open session."""

from __future__ import annotations

import json
import os
import select
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.container.conftest import World
from tests.support.container import eventually, free_port
from tests.support.people import Person
from tests.support.processes import Output, executable
from tests.support.tools import need_tool

pytestmark = pytest.mark.integration


def running(world: World) -> None:
    eventually(lambda: world.alice.state("demo") == "running", "the Space is running")


def plain_ssh(person: Person, config: Path, *args: str, key: Path | None = None) -> list[str]:
    """argv of the real ssh reading `config` (ssh takes ~/.ssh/config from the passwd home, not
    $HOME, so tests name the file), offering only `key` (default: the person's)."""
    return [
        need_tool("ssh"),
        "-F",
        str(config),
        "-i",
        str(key or person.key),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        *args,
    ]


def run(argv: list[str], person: Person, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=person.dir,
        env=env or person.env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def banner(port: int) -> bytes:
    """The first bytes a TCP server at 127.0.0.1:PORT sends (sshd: its version line), or b""."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            return s.recv(64)
    except OSError:
        return b""


def _processes(matches: Callable[[Path], bool]) -> list[int]:
    """Processes whose /proc/PID entry `matches` (one that ends while being read is skipped)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if matches(entry):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _processes_where(field: int, value: int) -> list[int]:
    """Processes whose /proc/PID/stat field `field` (counted after the command, 0 = state) is `value`."""
    return _processes(lambda entry: int((entry / "stat").read_text().rsplit(")", 1)[1].split()[field]) == value)


def children(pid: int) -> list[int]:
    return _processes_where(1, pid)


@contextmanager
def started(argv: list[str], person: Person) -> Iterator[tuple[subprocess.Popen[str], Output]]:
    """A process in its own session (a terminal's foreground group stands in), stderr collected."""
    proc = subprocess.Popen(
        argv,
        cwd=person.dir,
        env=person.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # with -N, all there is comes from ssh and the proxy on stderr
        text=True,
        start_new_session=True,
    )
    output = Output(proc)
    try:
        yield proc, output
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        output.finish()
        assert proc.stdout is not None
        proc.stdout.close()


# -- a config directory with a space and a % ------------------------------------------------------


def test_connect_and_ssh_config_work_from_a_config_dir_with_a_space_and_a_percent(world: World) -> None:
    running(world)
    bob = world.bob
    odd = bob.dir / "my config %d #1 it's"
    shutil.copytree(bob.dir / "config", odd)
    bob.env["PAIR_CONFIG_DIR"] = str(odd)
    result = bob.run_in_space("echo", "through connect")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "through connect\n"
    assert "intercepting" not in result.stderr

    bob.ok("spaces", "ssh-config")
    running(world)
    through = run(plain_ssh(bob, bob.dir / ".ssh" / "config", "demo.pair", "echo", "plain"), bob)
    assert through.returncode == 0, through.stderr + world.box.log("pair-agent.log") + world.broker.output.text()
    assert through.stdout == "plain\n"


# -- ControlPersist in the person's own ssh config -------------------------------------------------


def control_persist_config(person: Person, sockets: Path) -> Path:
    """pair's Include first (as `ssh-config` writes it), then the person's multiplexing for every host."""
    config = person.dir / "persist.conf"
    managed = Path(person.env["PAIR_CONFIG_DIR"]) / "ssh_config"
    config.write_text(
        f'Include "{managed}"\nHost *\n    ControlMaster auto\n    ControlPath {sockets}/%C\n    ControlPersist 10m\n'
    )
    return config


@pytest.fixture
def sockets() -> Iterator[Path]:
    """A directory for ControlPath sockets, short enough for a Unix socket's 108 bytes."""
    with tempfile.TemporaryDirectory(prefix="cm", dir="/tmp") as path:
        yield Path(path)


def test_pairs_reason_reaches_the_person_despite_control_persist(world: World, sockets: Path) -> None:
    running(world)
    bob = world.bob
    bob.ok("spaces", "ssh-config")
    config = control_persist_config(bob, sockets)
    running(world)
    ok = run(plain_ssh(bob, config, "demo.pair", "echo", "multiplexed"), bob)
    assert ok.returncode == 0, ok.stderr
    assert list(sockets.iterdir()) == []  # no master left behind, daemonized with our stderr gone
    argv = bob.connect("echo", "connected")  # connect's own ssh: never a master or a client of one
    through_connect = run([*argv[:5], "-F", str(config), *argv[5:]], bob)
    assert through_connect.returncode == 0, through_connect.stderr
    assert through_connect.stdout == "connected\n"
    assert list(sockets.iterdir()) == []

    world.alice.ok("spaces", "unshare", "demo", bob.email)  # bob's ssh config still names it
    refused = run(plain_ssh(bob, config, "demo.pair", "true"), bob)
    assert refused.returncode == 255
    assert "pair: error: The Space sp_" in refused.stderr and "was not found" in refused.stderr, refused.stderr
    assert "pair: hint: List the Spaces you can see" in refused.stderr


# -- a rebuilt container -----------------------------------------------------------------------------


def broker_host_keys(world: World, person: Person) -> list[str]:
    token = json.loads((Path(person.env["PAIR_CONFIG_DIR"]) / "session.json").read_text())["token"]
    spaces = httpx.get(f"{world.broker.url}/api/v1/spaces", headers={"Authorization": f"Bearer {token}"}).json()
    keys: list[str] = next(s for s in spaces if s["name"] == "demo")["container"]["host_keys"]
    return keys


def test_plain_ssh_keeps_working_after_the_container_is_rebuilt(world: World) -> None:
    running(world)
    bob, box = world.bob, world.box
    bob.ok("spaces", "ssh-config")
    config = bob.dir / ".ssh" / "config"
    assert run(plain_ssh(bob, config, "demo.pair", "true"), bob).returncode == 0

    # The rebuild: a new host key, sshd and the agent restarted, the container bootstrapped again.
    key = box.home / "sshd" / "ssh_host_ed25519_key"
    key.unlink()
    Path(f"{key}.pub").unlink()
    subprocess.run([need_tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    new_key = " ".join(Path(f"{key}.pub").read_text().split()[:2])
    assert box.ctl("restart", "sshd").returncode == 0
    assert box.ctl("restart", "pair-agent").returncode == 0
    again = world.alice.pair("spaces", "bootstrap", env=box.env())
    assert again.returncode == 0, again.stderr
    eventually(lambda: broker_host_keys(world, bob) == [new_key], "the broker records the new host key")
    running(world)

    after = run(plain_ssh(bob, config, "demo.pair", "echo", "still here"), bob)  # no ssh-config rerun
    assert after.returncode == 0, after.stderr
    assert after.stdout == "still here\n"
    assert "IDENTIFICATION HAS CHANGED" not in after.stderr
    pinned = (Path(bob.env["PAIR_CONFIG_DIR"]) / "known_hosts").read_text()
    assert new_key in pinned


# -- Ctrl-C and SIGTERM ------------------------------------------------------------------------------


def test_ctrl_c_on_ssh_n_ends_quietly(world: World) -> None:
    running(world)
    bob = world.bob
    bob.ok("spaces", "ssh-config")
    local = free_port()
    argv = plain_ssh(bob, bob.dir / ".ssh" / "config", "-v", "-N", "-L", f"{local}:127.0.0.1:{world.box.ssh_port}")
    with started([*argv, "demo.pair"], bob) as (ssh, output):
        output.wait_for(r"Entering interactive session")
        eventually(lambda: banner(local).startswith(b"SSH-2.0-"), "the forward carries sshd's banner")
        (proxy,) = children(ssh.pid)
        os.kill(proxy, signal.SIGINT)  # the proxy's share of a Ctrl-C: not its to act on
        assert banner(local).startswith(b"SSH-2.0-")  # the tunnel still carries
        os.killpg(ssh.pid, signal.SIGINT)  # the whole Ctrl-C, as a terminal sends it
        assert ssh.wait(timeout=10) == 255
    text = output.text()
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text


def test_ctrl_c_and_sigterm_under_connect(world: World) -> None:
    running(world)
    bob = world.bob
    local = free_port()
    forward = ("-N", "-L", f"{local}:127.0.0.1:{world.box.ssh_port}")
    with started(bob.connect(*forward), bob) as (connect, output):
        eventually(lambda: banner(local).startswith(b"SSH-2.0-"), "the forward carries sshd's banner")
        os.killpg(connect.pid, signal.SIGINT)  # Ctrl-C: ssh -N exits on it; connect passes its code on
        assert connect.wait(timeout=10) == 255
    assert "Traceback" not in output.text(), output.text()
    assert banner(local) == b""

    running(world)
    with started(bob.connect(*forward), bob) as (connect, output):
        eventually(lambda: banner(local).startswith(b"SSH-2.0-"), "the forward carries sshd's banner")
        (ssh,) = children(connect.pid)
        connect.send_signal(signal.SIGTERM)  # to connect alone, as a process manager would
        assert connect.wait(timeout=10) == 128 + signal.SIGTERM
        assert not Path(f"/proc/{ssh}").exists() or Path(f"/proc/{ssh}/stat").read_text().split()[2] == "Z"
        assert banner(local) == b""  # the forward is closed
    assert "Traceback" not in output.text(), output.text()


# -- a key that is not ssh's default ----------------------------------------------------------------


def test_a_key_added_from_another_file_is_the_one_ssh_offers(world: World) -> None:
    running(world)
    bob = world.bob
    other = bob.dir / ".ssh" / "other"
    other.parent.mkdir(mode=0o700)
    subprocess.run([need_tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    bob.ok("keys", "add", f"{other}.pub")
    default = bob.ok("keys", "list").splitlines()[0].split()[1]
    bob.ok("keys", "remove", default)  # only other.pub is registered now
    eventually(lambda: len(world.box.snapshot_emails() or ()) == 2, "the agent has the keys")

    # No -i and no Space name: bob sees only demo, and pair offers the key he registered.
    running(world)
    argv = [executable("pair"), "spaces", "connect", "--", "-o", "BatchMode=yes", "echo", "other key"]
    result = run(argv, bob)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "other key\n"

    bob.ok("spaces", "ssh-config")
    config = bob.dir / ".ssh" / "config"
    running(world)
    plain = run([need_tool("ssh"), "-F", str(config), "-o", "BatchMode=yes", "demo.pair", "echo", "plain"], bob)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout == "plain\n"


# -- how a stream ends -------------------------------------------------------------------------------


def test_a_broker_restart_ends_open_sessions_with_a_sentence(world: World) -> None:
    running(world)
    with world.bob.session() as session:
        world.broker.proc.terminate()
        assert session.wait(timeout=10) != 0
        assert session.stderr is not None
        stderr = session.stderr.read()
    assert "pair: The broker is restarting; connect again in a few seconds." in stderr, stderr
    assert "Traceback" not in stderr


# -- connect's own stream (pair.cli.handoff) --------------------------------------------------------


def group_members(pgid: int) -> list[int]:
    """Processes still in process group `pgid` (zombies included)."""
    return _processes_where(3, pgid)


def _with_argument_under(directory: Path) -> list[int]:
    """Processes with an argument naming a path under `directory` (fdpass.py's rendezvous)."""
    under = os.fsencode(directory) + b"/"
    return _processes(lambda entry: any(a.startswith(under) for a in (entry / "cmdline").read_bytes().split(b"\0")))


def left_behind(pgid: int, rendezvous_dir: Path, timeout: float = 10.0) -> list[str]:
    """What still runs of a connect once each process has had `timeout` seconds in all to exit,
    as "PID STATE COMMAND" lines; [] when nothing does. Looked for: process group `pgid` (connect,
    ssh) and whatever names a path under `rendezvous_dir` (fdpass.py, in a session of its own).
    Such a process is nobody's to wait for and may end after connect: each exit is awaited
    through a pidfd (pidfd_open(2), readable once the process ends)."""
    deadline = time.monotonic() + timeout
    left = []
    for pid in sorted(set(group_members(pgid)) | set(_with_argument_under(rendezvous_dir))):
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            if poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
                continue
        finally:
            os.close(pidfd)
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        left.append(f"{pid} {state} {command.strip()}")
    return left


def proxy_words(ssh_pid: int) -> list[str]:
    """The ProxyCommand ssh was given, as words."""
    argv = Path(f"/proc/{ssh_pid}/cmdline").read_bytes().decode().split("\0")
    (value,) = [a.removeprefix("ProxyCommand=") for a in argv if a.startswith("ProxyCommand=")]
    return shlex.split(value)


def test_connect_holds_the_stream_and_ssh_starts_no_second_pair(world: World, tmp_path: Path) -> None:
    running(world)
    bob = world.bob
    bob.env["TMPDIR"] = str(tmp_path / "tmp")
    (tmp_path / "tmp").mkdir()
    with bob.session() as connect:
        (ssh,) = children(connect.pid)
        assert "ProxyUseFdpass=yes" in Path(f"/proc/{ssh}/cmdline").read_bytes().decode().split("\0")
        words = proxy_words(ssh)
        assert Path(words[0]).name == "setsid"  # out of the terminal's process group: Ctrl-C is ssh's
        assert words[2:4] == ["-I", "-S"] and words[4].endswith("/pair/fdpass.py")
        assert children(ssh) == []  # fdpass.py handed ssh the socket and left: no process copies but connect
        assert not Path(words[5]).exists()  # the rendezvous is gone once used
        assert list((tmp_path / "tmp").iterdir()) == []
        listing = world.alice.ok("spaces", "sessions", "demo")
        assert bob.email in listing
        assert connect.poll() is None
    eventually(lambda: "Nobody is connected" in world.alice.ok("spaces", "sessions", "demo"), "the stream is closed")


def test_ssh_stopping_before_it_takes_the_stream_closes_it_and_leaves_nothing(world: World, tmp_path: Path) -> None:
    running(world)
    bob = world.bob
    bob.env["TMPDIR"] = str(tmp_path / "tmp")
    (tmp_path / "tmp").mkdir()
    argv = [executable("pair"), "spaces", "connect", "demo", "--", "-o", "NoSuchOption=yes", "true"]
    with started(argv, bob) as (connect, output):
        assert connect.wait(timeout=30) == 255  # ssh's own refusal of the option, passed on
        assert left_behind(connect.pid, tmp_path / "tmp") == []  # neither ssh nor fdpass.py is left behind
    assert "Bad configuration option" in output.text(), output.text()
    assert "Traceback" not in output.text()
    assert list((tmp_path / "tmp").iterdir()) == []
    eventually(lambda: "Nobody is connected" in world.alice.ok("spaces", "sessions", "demo"), "no stream is left")


def test_ctrl_c_while_connect_sets_up_leaves_no_process_and_no_stream(world: World, tmp_path: Path) -> None:
    running(world)
    bob = world.bob
    bob.env["TMPDIR"] = str(tmp_path / "tmp")
    (tmp_path / "tmp").mkdir()
    with started(bob.connect("sleep", "30"), bob) as (connect, output):
        eventually(lambda: children(connect.pid), "connect started ssh")
        os.killpg(connect.pid, signal.SIGINT)  # Ctrl-C at once: ssh and connect get it (fdpass.py is not in the group)
        assert connect.wait(timeout=15) in (130, 255)
        assert left_behind(connect.pid, tmp_path / "tmp") == []
    assert "Traceback" not in output.text(), output.text()
    assert list((tmp_path / "tmp").iterdir()) == []
    eventually(lambda: "Nobody is connected" in world.alice.ok("spaces", "sessions", "demo"), "no stream is left")


def test_connect_without_a_place_for_its_rendezvous_goes_through_the_proxy(world: World, tmp_path: Path) -> None:
    running(world)
    bob = world.bob
    deep = tmp_path / ("d" * 100)  # too long a path for a Unix socket
    deep.mkdir()
    bob.env["TMPDIR"] = str(deep)
    with bob.session() as connect:
        (ssh,) = children(connect.pid)
        assert proxy_words(ssh)[-3:-1] == ["spaces", "proxy"]
    assert list(deep.iterdir()) == []
