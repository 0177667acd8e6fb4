"""SSH through the broker, for real: the Space's container from tests/support/container.py (a
mount namespace with supervisord, sshd on 127.0.0.1 and `pair agent`, all through the launcher
install.sh writes), bootstrapped with `pair spaces bootstrap`. Ours: ssh/scp with the options
`pair spaces connect` and `pair spaces ssh-config` use (ProxyCommand `pair spaces proxy`, pinned
host key), and `pair spaces connect` itself. Baseline: the same ssh/scp straight to the same sshd."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.harness import Figure, Stats, Target, interleave, ms, run_once
from bench.world import World, venv
from tests.support.container import Container, container
from tests.support.processes import executable

NAME = "SSH: scp 100 MiB and `ssh … true` through the relay vs straight to sshd"
EMAIL = "user0500@example.com"  # a seeded user: 10 Spaces of their own, some shared with them
MIB = 1 << 20
SCP_SIZE = 100 * MIB


@contextmanager
def space(
    world: World, who: str = "ssh-user", email: str = EMAIL
) -> Iterator[tuple[Container, dict[str, str], Path, list[str]]]:
    """(the container, the person's env, their private key, ssh options through the relay), for
    the seeded user `email` working in the scratch directory `who` (one per benchmark)."""
    p = world.progress
    env = world.login(email, who)
    person = world.tmp / who
    person.mkdir(exist_ok=True)
    key = person / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", email, "-f", str(key)], check=True)

    def pair(*args: str, env: dict[str, str] = env) -> str:
        done = subprocess.run(
            [executable("pair"), *args],
            env=env,
            cwd=person,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"pair {' '.join(args)}: {done.stderr}")
        return done.stdout

    pair("keys", "add", f"{key}.pub")
    pair("spaces", "authorize", "--name", "box", "--no-share", "--output", str(person / "SPACE_ID.txt"))
    token = (person / "SPACE_ID.txt").read_text().strip()
    p.note("starting the Space's container (supervisord, sshd, pair agent)")
    with container(world.tmp / f"{who}-space") as box:
        pair("spaces", "bootstrap", token, env=box.env())
        deadline = time.monotonic() + 30
        while '"running"' not in pair("spaces", "list", "--json"):
            if time.monotonic() > deadline:
                raise RuntimeError("the Space did not come up:\n" + box.log("pair-agent.log"))
            time.sleep(0.2)
        # `pair spaces connect` once: it pins the host key in PAIR_CONFIG_DIR/known_hosts.
        connect = [
            executable("pair"),
            "spaces",
            "connect",
            "box",
            "--",
            *key_only(key),
            "true",
        ]
        run_once(connect, env=env, cwd=person)
        yield box, env, key, _relay_options(world, env)


def key_only(key: Path) -> list[str]:
    """ssh options that offer `key` alone and never prompt (every benchmark's ssh and scp)."""
    return ["-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"]


def _relay_options(world: World, env: dict[str, str]) -> list[str]:
    """The ssh options `pair spaces connect` passes (pair.cli.ssh.ssh_options), as -o pairs."""
    from pair.api.client import Client
    from pair.cli import ssh
    from pair.config import load_session

    saved = os.environ.get("PAIR_CONFIG_DIR")
    os.environ["PAIR_CONFIG_DIR"] = env["PAIR_CONFIG_DIR"]
    try:
        session = load_session()
        assert session is not None
        with Client(session.url, token=session.token) as client:
            target = next(s for s in client.spaces() if s.name == "box")
        options = dict(ssh.ssh_options(target))
        options["ProxyCommand"] = (venv("pair"), "spaces", "proxy", target.id)
    finally:
        if saved is None:
            del os.environ["PAIR_CONFIG_DIR"]
        else:
            os.environ["PAIR_CONFIG_DIR"] = saved
    return ssh.option_args(options.items())


def run(world: World) -> list[Figure]:
    p = world.progress
    figures = []
    with space(world) as (box, env, key, relay):
        known_hosts = world.tmp / "ssh-user" / "known_hosts_direct"
        known_hosts.write_text(f"[127.0.0.1]:{box.ssh_port} {box.host_public_key}\n")
        common = key_only(key)
        direct = ["-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes"]
        ssh_relay = ["ssh", *relay, *common, "box.pair", "true"]
        ssh_direct = ["ssh", *direct, *common, "-p", str(box.ssh_port), "root@127.0.0.1", "true"]
        n = 5 if world.quick else 15
        ours, base = interleave(
            p, "ssh … true", lambda: run_once(ssh_relay, env=env), lambda: run_once(ssh_direct, env=env), n
        )
        fig = Figure(
            "ssh_setup",
            "SSH connection set-up, `ssh … true` (ProxyCommand `pair spaces proxy`)",
            "ms",
            ms(ours),
            ms(base),
            "`ssh` straight to sshd",
            Target("ratio<=", 1.5),
        )
        p.result(fig)
        figures.append(fig)

        connect = [executable("pair"), "spaces", "connect", "box", "--", *common, "true"]
        n = 3 if world.quick else 8
        ours, base = interleave(
            p,
            "pair spaces connect -- true",
            lambda: run_once(connect, env=env),
            lambda: run_once(ssh_direct, env=env),
            n,
        )
        fig = Figure(
            "connect_setup",
            "`pair spaces connect box -- true`",
            "ms",
            ms(ours),
            ms(base),
            "`ssh` straight to sshd",
            Target("ratio<=", 1.3),
        )
        p.result(fig)
        figures.append(fig)

        shm = Path("/dev/shm")  # noqa: S108 - tmpfs, so disks do not time the copy; the container shares it
        source = shm / f"pair-bench-{os.getpid()}.bin"
        dest = shm / f"pair-bench-{os.getpid()}.copy"
        try:
            with source.open("wb") as f:
                for _ in range(SCP_SIZE // MIB):
                    f.write(os.urandom(MIB))
            scp_relay = ["scp", "-q", *relay, *common, str(source), f"box.pair:{dest}"]
            scp_direct = ["scp", "-q", *direct, *common, "-P", str(box.ssh_port), str(source), f"root@127.0.0.1:{dest}"]

            def timed(argv: list[str]) -> float:
                seconds = run_once(argv, env=env)
                assert dest.stat().st_size == SCP_SIZE
                dest.unlink()
                return seconds

            n = 3 if world.quick else 9
            ours, base = interleave(p, "scp 100 MiB", lambda: timed(scp_relay), lambda: timed(scp_direct), n)
        finally:
            source.unlink(missing_ok=True)
            dest.unlink(missing_ok=True)
        fig = Figure(
            "scp",
            "scp 100 MiB through `pair spaces proxy`",
            "MiB/s",
            Stats([100 / s for s in ours.samples]),
            Stats([100 / s for s in base.samples]),
            "`scp` straight to sshd",
            Target("ratio>=", 0.7),
        )
        p.result(fig)
        figures.append(fig)
    return figures
