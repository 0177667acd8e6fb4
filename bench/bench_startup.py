"""Commands people and sshd start: `pair verify` (through the real launcher, with the empty
environment sshd gives it), `pair --help`, `pair spaces list` against the local broker, and the
time until `pair spaces authorize` shows its picker in a terminal (issue 10: time to a prompt)."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

from bench.harness import Figure, Target, interleave, ms, run_once
from bench.seed import ssh_public_key
from bench.world import World, venv

NAME = "start-up: pair verify, pair --help, pair spaces list, the authorize picker"
N_KEYS = 1000


def make_home(root: Path) -> tuple[Path, str, str]:
    """A PAIR_HOME with the launcher install.sh writes and a 1,000-key snapshot written by the
    agent's own code (so the format is always the current one).
    Returns (launcher, a listed key, a key nobody listed)."""
    from pair.api.models import AuthorizedKey, AuthorizedKeys
    from pair.container import launcher
    from pair.container.agent import Agent
    from pair.container.home import Home, Registration

    root.mkdir(mode=0o755, parents=True, exist_ok=True)
    launcher.write(root / "pair", root)
    keys = [" ".join(ssh_public_key("").split()[:2]) for _ in range(N_KEYS)]
    listed = [
        AuthorizedKey(key=k, fingerprint="SHA256:x", email=f"user{i:04d}@example.com", role="shared")
        for i, k in enumerate(keys)
    ]
    with contextlib.redirect_stdout(io.StringIO()):  # the agent logs who is in
        Agent(Home(root)).write_snapshot(
            Registration("http://127.0.0.1:8000", "sp_benchbenchbe", "bench", "pair_ac_x"),
            AuthorizedKeys(version="0123456789abcdef", login_user="root", keys=listed),
            86400,
        )
    hit = keys[-1]  # the last entry: the whole list is scanned
    miss = " ".join(ssh_public_key("stranger").split()[:2])
    return root / "pair", hit, miss


def check_verify(launcher: Path, hit: str, miss: str) -> None:
    """Time only what works: the listed key is let in, the other one is not."""
    for key, want in ((hit, True), (miss, False)):
        key_type, blob = key.split()
        out = subprocess.run(
            [str(launcher), "verify", "root", blob, key_type], env={}, capture_output=True, text=True, check=False
        )
        if bool(out.stdout.strip()) != want or (want and blob not in out.stdout):
            raise RuntimeError(
                f"pair verify answered {out.stdout!r} ({out.stderr.strip()}) for a key it should "
                f"{'allow' if want else 'deny'}"
            )


def run(world: World) -> list[Figure]:
    p = world.progress
    figures = []
    launcher, hit, miss = make_home(world.tmp / "verify-home")
    check_verify(launcher, hit, miss)
    base = [sys.executable, "-I", "-S", "-c", "pass"]
    n = 15 if world.quick else 40

    def verify(key: str) -> float:
        key_type, blob = key.split()
        return run_once([str(launcher), "verify", "root", blob, key_type], env={})  # sshd: empty environment

    for label, key in (("hit", hit), ("miss", miss)):
        ours, baseline = interleave(
            p, f"pair verify ({label})", partial(verify, key), lambda: run_once(base, env={}), n
        )
        fig = Figure(
            f"verify_{label}",
            f"`pair verify` ({label}, 1,000-key snapshot)",
            "ms",
            ms(ours),
            ms(baseline),
            "`python -I -S -c pass`",
            Target("ratio<=", 1.5),
            notes="through the launcher install.sh writes, empty environment, as sshd runs it",
        )
        p.result(fig)
        figures.append(fig)

    env = world.alice_env  # logged in to the local broker; alice sees 10 Spaces among 10,000
    plain = [sys.executable, "-c", "pass"]
    n = 8 if world.quick else 20
    for key, label, argv, limit in (
        ("help", "`pair --help`", [venv("pair"), "--help"], 120.0),
        (
            "spaces_list",
            "`pair spaces list` (local broker, 10 of 10,000 Spaces)",
            [venv("pair"), "spaces", "list"],
            120.0,
        ),
    ):
        ours, baseline = interleave(p, label, partial(run_once, argv, env=env), lambda: run_once(plain, env=env), n)
        fig = Figure(key, label, "ms", ms(ours), ms(baseline), "`python -c pass`", Target("<=", limit))
        p.result(fig)
        figures.append(fig)

    def picker() -> float:
        """Spawn `pair spaces authorize` in a pseudo-terminal until the picker is on the screen,
        then cancel it (q): nothing is created."""
        from pair.cli.picker import HEADER
        from tests.support.terminal import Terminal, tty_env

        start = time.perf_counter()
        term = Terminal(
            venv("pair"),
            ["spaces", "authorize", "--output", str(world.tmp / "SPACE_ID.txt")],
            env=tty_env(env),
            cwd=world.tmp,
        )
        try:
            term.expect_screen(HEADER)
            shown = time.perf_counter() - start
            term.send("q")
            term.wait_exit()
        finally:
            term.close()
        return shown

    def python_in_terminal() -> float:
        from tests.support.terminal import Terminal, tty_env

        start = time.perf_counter()
        term = Terminal(sys.executable, ["-c", "print('ready')"], env=tty_env(env), cwd=world.tmp)
        try:
            term.expect_screen("ready")
            return time.perf_counter() - start
        finally:
            term.close()

    ours, baseline = interleave(p, "authorize picker", picker, python_in_terminal, n)
    fig = Figure(
        "authorize_picker",
        "`pair spaces authorize`: until its picker shows (pty, local broker)",
        "ms",
        ms(ours),
        ms(baseline),
        "`python -c print` in a pty",
        Target("<=", 250.0),
        notes="the teammates from the broker, prompt_toolkit drawn; q cancels (nothing created)",
    )
    p.result(fig)
    figures.append(fig)
    return figures
