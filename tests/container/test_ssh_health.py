"""Health the user can see, and the relay under load and across a broker restart, for real:
supervisord, sshd and `pair agent` in a mount namespace, a real `pair-broker serve`, real ssh.

- sshd failing (its port taken by another program) is named by `list`, `connect` and `up`, and
  `up` brings it back once the port is free;
- 50 ssh sessions at once all get in (every relayed connection comes from 127.0.0.1);
- a broker restart ends open sessions with a sentence, the agent logs one line per tunnel and no
  traceback, and comes back at once; a connection made meanwhile waits for it, or says why not.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pair.container import configs
from pair.container.install.layout import Layout
from pair.container.install.plan import Host, Options, install_plan
from pair.container.install.steps import WriteFile
from tests.container.conftest import BROKER_ENV, World
from tests.support.broker import real_broker
from tests.support.container import eventually
from tests.support.people import Person
from tests.support.processes import executable
from tests.support.tools import need_tool

pytestmark = pytest.mark.integration


# Snapshots outlive a broker restart here, so a refusal below is about the relay, not about `pair
# verify` finding the snapshot too old while the agent was away; and agents have longer than the
# relay's wait (relay.READY_WAIT) to come back before a restarted broker counts them as gone.
ENV = {**BROKER_ENV, "PAIR_BROKER_AGENT_INTERVAL": "2", "PAIR_BROKER_SNAPSHOT_MAX_AGE": "60"}


@pytest.fixture
def broker_env() -> dict[str, str]:
    return ENV


def running(world: World) -> None:
    eventually(lambda: world.alice.state("demo") == "running", "the Space is running")


def ssh_of(person: Person) -> dict[str, object] | None:
    space = next(s for s in person.spaces() if s["name"] == "demo")
    ssh = space["ssh"]
    return ssh if isinstance(ssh, dict) else None


@contextlib.contextmanager
def occupy(port: int) -> Iterator[socket.socket]:
    """Another program listening on `port`, on every address sshd would bind (IPv4 and IPv6)."""
    try:
        holder = socket.socket(socket.AF_INET6)
        holder.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # one socket for both families
        holder.bind(("::", port))
    except OSError:  # no IPv6 here: then sshd cannot bind :: either
        holder = socket.socket(socket.AF_INET)
        holder.bind(("0.0.0.0", port))  # noqa: S104 - where sshd listens
    with holder:
        holder.listen()
        yield holder


def test_a_taken_ssh_port_is_named_by_list_connect_and_up_and_up_brings_ssh_back(world: World) -> None:
    running(world)
    alice, bob, box = world.alice, world.bob, world.box
    assert box.ctl("stop", "sshd").returncode == 0  # as if the container started with the port taken
    stopped = eventually(lambda: (ssh := ssh_of(alice)) and ssh["supervisor_state"] == "STOPPED" and ssh, "reported")
    assert stopped == {"serving": False, "reason": "sshd is stopped.", "supervisor_state": "STOPPED"}

    with occupy(box.ssh_port):
        up = alice.pair("spaces", "up", "--space", "demo")  # the agent starts sshd; it cannot bind
        assert up.returncode == 1
        assert up.stderr.startswith('error: SSH did not start in "demo": sshd ')
        assert "Address already in use" in up.stderr
        assert "hint: Fix it in the container" in up.stderr

        listed = alice.ok("spaces", "list")
        assert "starting (ssh down)" in listed
        note = listed.splitlines()[-1]
        assert note.startswith("demo: SSH is not being served: sshd ")
        assert f"Bind to port {box.ssh_port} on " in note and "Address already in use" in note

        refused = bob.run_in_space("true")  # at once, with the reason: not a timeout
        assert refused.returncode == 1
        assert refused.stderr.startswith('error: SSH is not being served in "demo": sshd ')
        assert "Address already in use" in refused.stderr
        assert "hint: Ask its owner (alice@example.com) to fix it" in refused.stderr
        assert "may be restarting" not in refused.stderr

        # The tunnel's own refusal, for clients that skip `connect`'s check (ssh with ssh-config):
        proxied = subprocess.run(
            [executable("pair"), "spaces", "proxy", next(str(s["id"]) for s in bob.spaces())],
            env=bob.env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=30,
            check=False,
        )
        assert proxied.returncode == 1
        assert 'pair: error: SSH is not being served in "demo": sshd ' in proxied.stderr

    assert alice.ok("spaces", "up", "--space", "demo").endswith(" is running\n")  # the port is free now
    assert ssh_of(alice) == {"serving": True, "reason": "", "supervisor_state": "RUNNING"}
    assert bob.run_in_space("true").returncode == 0
    agent_log = box.log("pair-agent.log")
    assert (
        "SSH is not being served: sshd could not start" in agent_log
        or "SSH is not being served: sshd keeps" in agent_log
    )
    assert "Traceback" not in agent_log


def test_fifty_ssh_sessions_at_once_all_get_in(world: World, tmp_path: Path) -> None:
    """Every relayed connection reaches sshd from 127.0.0.1, as these do."""
    running(world)
    eventually(world.box.snapshot_emails, "the agent wrote the snapshot")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{world.box.ssh_port} {world.box.host_public_key}\n")
    options = ("BatchMode=yes", "IdentitiesOnly=yes", f"UserKnownHostsFile={known_hosts}", "StrictHostKeyChecking=yes")
    argv = [need_tool("ssh"), "-i", str(world.bob.key), "-p", str(world.box.ssh_port)]
    argv += [a for o in options for a in ("-o", o)]
    sessions = [
        subprocess.Popen(
            [*argv, "root@127.0.0.1", "echo", str(n)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(50)
    ]
    results = [(s.communicate(timeout=60), s.returncode) for s in sessions]
    failed = [(n, err) for n, ((_, err), code) in enumerate(results) if code != 0]
    assert not failed, failed
    assert [out for (out, _), _ in results] == [f"{n}\n" for n in range(50)]


def test_a_broker_restart_ends_sessions_with_a_sentence_and_the_agent_logs_one_line_each(
    world: World,
) -> None:
    running(world)
    port = world.broker.url.rsplit(":", 1)[1]
    with contextlib.ExitStack() as stack:
        sessions = [stack.enter_context(world.bob.session()) for _ in range(3)]
        world.broker.proc.terminate()
        assert world.broker.proc.wait(15) == 0
        for session in sessions:
            assert session.wait(timeout=10) != 0
            assert session.stderr is not None
            assert "pair: The broker is restarting; connect again in a few seconds." in session.stderr.read()
    with real_broker(world.broker.data_dir, "--port", port, env=ENV):
        # Straight away: the broker waits for the agent to reconnect (it retries within a second).
        first = world.bob.run_in_space("true")
        assert first.returncode == 0, first.stderr
    agent_log = world.box.log("pair-agent.log")
    ended = [line for line in agent_log.splitlines() if " ended: the broker closed it (1012 " in line]
    assert len(ended) == 3, agent_log
    assert "Traceback" not in agent_log
    assert "never retrieved" not in agent_log
    # ... and came back at once: its first retry after a 1012 is within a second.
    assert re.search(
        r"the broker closed the channel \(1012 the broker is restarting\)\. Retrying in (0\.\d|1\.0) s", agent_log
    )


def test_a_connection_made_before_the_agent_is_back_waits_for_it_or_says_so(world: World) -> None:
    running(world)
    agent_pid = int(world.box.ctl("pid", "pair-agent").stdout.strip())
    port = world.broker.url.rsplit(":", 1)[1]
    world.broker.proc.terminate()
    assert world.broker.proc.wait(15) == 0
    os.kill(agent_pid, signal.SIGSTOP)  # the container is slow to notice
    try:
        with real_broker(world.broker.data_dir, "--port", port, env=ENV):
            assert world.alice.state("demo") == "running"  # what the record still says
            refused = world.bob.run_in_space("true")  # the relay waits a few seconds, then says why
            # connect opened the stream itself (pair.cli.handoff): its error, in its words, not ssh's
            assert refused.returncode == 1, refused.stderr
            assert refused.stderr.startswith('error: The container of "demo" has not reconnected to the broker yet')
            assert "hint: Try again in a few seconds." in refused.stderr
            assert "proxy dialer" not in refused.stderr and "mm_receive_fd" not in refused.stderr
            assert "(the broker restarted " in refused.stderr
            assert "not running (running)" not in refused.stderr
            os.kill(agent_pid, signal.SIGCONT)
            # Right away again: this time the agent reconnects while the tunnel waits.
            again = world.bob.run_in_space("true")
            assert again.returncode == 0, again.stderr
    finally:
        os.kill(agent_pid, signal.SIGCONT)


def test_the_sshd_config_is_valid_for_this_sshd_and_fits_the_relay(tmp_path: Path) -> None:
    sshd = need_tool("sshd")
    version = configs.openssh_version(sshd)
    ssh_v = subprocess.run([need_tool("ssh"), "-V"], capture_output=True, text=True, check=False).stderr
    assert version is not None
    assert f"OpenSSH_{version[0]}.{version[1]}" in ssh_v  # the same release as the client here
    (tmp_path / "sshd").mkdir()
    subprocess.run(
        [
            need_tool("ssh-keygen"),
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            str(tmp_path / "sshd" / "ssh_host_ed25519_key"),
        ],
        check=True,
    )
    config = tmp_path / "sshd_config"
    layout = Layout(prefix=tmp_path, sshd_config=config)  # what install.sh installs for this sshd
    plan = install_plan(Options(), layout, Host.probe(layout, sshd, "root"))
    [rendered] = [step.content for step in plan if isinstance(step, WriteFile) and step.path == config]
    assert rendered == configs.sshd_config(str(tmp_path), openssh=version)
    config.write_text(rendered)
    checked = subprocess.run([sshd, "-t", "-f", str(config)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    effective = subprocess.run(
        [sshd, "-T", "-f", str(config), "-C", "user=root,host=localhost,addr=127.0.0.1"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert "maxstartups 100:30:200" in effective
    assert "logingracetime 60" in effective
    newer = configs.sshd_config("/opt/pair", openssh=(9, 8))
    assert "PerSourcePenaltyExemptList 127.0.0.1/32,::1/128" in newer
    assert "PerSourcePenalty" not in configs.sshd_config("/opt/pair", openssh=(9, 2))
