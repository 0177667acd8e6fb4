"""scripts/local-container.sh as the README's newcomer runs it: right after `make run`, whose venv
has the package with its `broker` extra and none of the test extra (no pytest); and stopped the
way a person stops it, with Ctrl-C (test_journey.py stops it once it holds a Space)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from pair.api.tokens import space_key
from tests.install.conftest import REPO
from tests.support.processes import Output, clean_env
from tests.support.run_venv import only_run_deps
from tests.support.tools import need_root


def test_the_script_runs_in_the_venv_make_run_makes() -> None:
    # A name it refuses is checked after the Debian-root machinery is imported: the whole import
    # closure loads, and the refusal is the script's own sentence, not an ImportError's traceback.
    result = subprocess.run(
        [str(REPO / "scripts" / "local-container.sh"), "--name", "Not a name!", "--key-file", "/nonexistent"],
        env=only_run_deps(clean_env()),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("error: 'Not a name!' is not a Space name."), result.stderr


def test_the_blocker_blocks_what_make_run_does_not_install() -> None:
    result = subprocess.run(
        [str(REPO / ".venv" / "bin" / "python"), "-c", "import pytest"],
        env=only_run_deps(clean_env()),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "not in a `make run` venv" in result.stderr, result


def holding(work: Path) -> list[int]:
    """The processes (of any mount namespace) that have a mount under `work`: the root's."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if f" {work}/" in (entry / "mountinfo").read_text():
                    found.append(int(entry.name))
            except OSError:
                continue  # ended meanwhile
    return found


def ctrl_c(proc: subprocess.Popen[str]) -> None:
    """What a terminal does on Ctrl-C: SIGINT to the whole foreground process group (the script's
    and every child's in it), which the script was started as (a session of its own)."""
    os.killpg(proc.pid, signal.SIGINT)


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_stopped_while_it_installs_it_leaves_nothing(how: str, tmp_path: Path) -> None:
    """Reproduction: Ctrl-C reached the namespace's holder too, which died, so the clean-up failed
    with `FileNotFoundError: /proc/PID/ns/mnt` (a traceback) and left the root mounted. Here the
    broker the key names never answers, so the script waits inside the mounted root (fetching
    install.sh) when it is stopped."""
    need_root()
    with socket.socket() as broker:
        broker.bind(("127.0.0.1", 0))
        broker.listen()
        broker.settimeout(300)  # the first run builds the Debian root (~1 minute)
        key = space_key(f"http://127.0.0.1:{broker.getsockname()[1]}", "s" * 43)
        work = tmp_path / "root"
        proc = subprocess.Popen(
            [str(REPO / "scripts" / "local-container.sh"), "--name", "demo", "--work", str(work)],
            env=only_run_deps(clean_env(PAIR_SPACE_KEY=key)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        output = Output(proc)
        try:
            connection, _ = broker.accept()  # the script asks for install.sh: the root is mounted
            with connection:
                assert holding(work), "the root is mounted while it installs"
                if how == "ctrl-c":
                    ctrl_c(proc)
                else:
                    proc.send_signal(signal.SIGTERM)
                code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            output.finish()
            assert proc.stdout is not None
            proc.stdout.close()
    text = output.text()
    assert "Traceback" not in text, text
    assert code == 128 + (signal.SIGINT if how == "ctrl-c" else signal.SIGTERM), text
    assert "stopped (SIG" in text and "before the container was ready; nothing is left" in text, text
    assert holding(work) == []
    assert not work.exists()
