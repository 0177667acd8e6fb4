"""scripts/local-container.sh as the README's newcomer runs it: right after `make run`, whose venv
has the package with its `broker` extra and none of the test extra (no pytest)."""

from __future__ import annotations

import subprocess

from tests.install.conftest import REPO
from tests.support.processes import clean_env
from tests.support.run_venv import only_run_deps


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
