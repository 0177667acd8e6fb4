"""The README's journey, run as written: operator, owner, container (scripts/local-container.sh, a
real Debian root with install.sh, supervisord, sshd and the agent) and teammate, against a real
broker, until the teammate has a shell in the container.

The commands are read from README.md, so the README cannot drift from what works. Each role's
block runs in one fresh shell, as in a new terminal: its own HOME and config dir (its own
machine), and nothing another block set (PATH without .venv/bin, unless the block puts it there).
The container runs as `make run` leaves the machine: its Python can import none of the test
extra. `make run` is the real broker started the way scripts/serve.sh starts it, on a free port
instead of 8000.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.install.conftest import REPO
from tests.support.broker import real_broker
from tests.support.processes import Output, clean_env, ended_by_ctrl_c, holding
from tests.support.run_venv import only_run_deps
from tests.support.tools import need_root, need_tool

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

ROLES = ("Operator", "Owner", "Container", "Teammate")
README_URL = "http://127.0.0.1:8000"
ON_PATH = 'export PATH="$PWD/.venv/bin:$PATH"'


def journey() -> dict[str, list[str]]:
    """Each role's commands: the first ```sh block after its **Role** in the README's Try-it section."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Try it") :]
    section = section[: section.index("\n## ", 1)]
    out = {}
    for role in ROLES:
        after = section[section.index(f"**{role}**") :]
        block = re.search(r"```sh\n(.*?)```", after, re.DOTALL)
        assert block, role
        lines = [ln.split("  # ")[0].strip() for ln in block.group(1).splitlines()]
        out[role] = [ln for ln in lines if ln and not ln.startswith("#")]
    return out


def test_the_readme_journey_gets_a_teammate_a_shell_in_the_container(tmp_path: Path) -> None:
    need_root()
    need_tool("ssh")
    need_tool("debootstrap")
    steps = journey()
    # The commands after the installs (the operator's are the broker's own business).
    assert sum(len([c for c in steps[r] if c != ON_PATH]) for r in ("Owner", "Container", "Teammate")) <= 6, steps
    assert steps["Operator"][0].startswith("make run")

    folder = tmp_path / "clone"  # the commands' working folder: as a fresh clone would be after `make run`
    folder.mkdir()
    os.symlink(REPO / "scripts", folder / "scripts")
    os.symlink(REPO / ".venv", folder / ".venv")
    venv_bin = str(REPO / ".venv" / "bin")
    # A new terminal's PATH: none of this test's venv (scripts/test.sh may have put it first).
    path = ":".join(p for p in os.environ["PATH"].split(":") if p and os.path.realpath(p) != os.path.realpath(venv_bin))
    assert shutil.which("pair", path=path) is None, "a pair outside .venv would hide a block that forgets PATH"
    with real_broker(folder / ".pair-broker") as broker:

        def role_env(name: str) -> dict[str, str]:
            home = tmp_path / name
            home.mkdir(exist_ok=True)
            return clean_env(HOME=str(home), PAIR_CONFIG_DIR=str(home / ".config" / "pair"), PATH=path)

        def run(name: str, commands: list[str]) -> subprocess.CompletedProcess[str]:
            """One block in one fresh shell, as typed into a new terminal: stops at the first failure."""
            script = "set -e\n" + "\n".join(c.replace(README_URL, broker.url) for c in commands) + "\n"
            result = subprocess.run(
                ["sh", "-c", script], cwd=folder, env=role_env(name), capture_output=True, text=True, timeout=240
            )
            assert result.returncode == 0, f"{name}:\n{script}\n{result.stdout}\n{result.stderr}"
            return result

        run("operator", steps["Operator"][1:])  # "then, in another terminal": make run holds its own
        started = time.monotonic()
        run("owner", steps["Owner"])
        owner_done = time.monotonic()

        [container] = steps["Container"]
        argv = shlex.split(container)
        assert argv[0] == "sudo"  # this test runs as root already
        proc = subprocess.Popen(
            argv[1:],
            cwd=folder,
            env=only_run_deps(role_env("container")),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, as a terminal's foreground job
        )
        output = Output(proc)
        with ended_by_ctrl_c(proc, output):
            work = Path(output.wait_for(r"local-container: a Debian 12 root in (\S+) ").group(1))
            output.wait_for(r"local-container: supervisord", timeout=600)  # install.sh (the package installs) done
            installed = time.monotonic()
            output.wait_for(r"ready: the container demo is a Space", timeout=120)
            ready = time.monotonic()
            *before, connect = steps["Teammate"]
            assert shlex.split(connect) == ["pair", "spaces", "connect", "demo"]
            inside = run("teammate", [*before, f"{connect} -- echo in the Space as '$(whoami)'"])
            shell = time.monotonic()
            assert inside.stdout.splitlines()[-1] == "in the Space as root", inside.stdout
            besides_installs = (owner_done - started) + (shell - installed)
            print(
                f"journey: the teammate's shell {shell - started:.1f} s after the owner's first command, "
                f"{besides_installs:.1f} s of it not install.sh (ready {ready - installed:.1f} s after it)"
            )
            key = (folder / "demo.key").read_text().strip()
            assert key not in output.text()
            # "it holds its terminal until Ctrl-C": stopped as a terminal stops it, it leaves nothing
            # (reproduction: the holder of its namespace died of the same SIGINT, and the clean-up
            # failed with a traceback, leaving supervisord, sshd, the agent and the mounts behind).
            assert holding(work), "the root is mounted while the container runs"
        assert "local-container: stopping" in output.text()
        assert "Traceback" not in output.text(), output.text()
        assert holding(work) == []
        assert not work.exists()
