"""Talking to supervisord, which runs the Space's sshd and `pair agent`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

DEFAULT_CONF = "/etc/supervisor/supervisord.conf"
RUNNING, NOT_RUNNING, SUPERVISORD_DOWN = 0, 3, 4  # `supervisorctl status` exit codes


def conf_path() -> str:
    return os.environ.get("PAIR_SUPERVISOR_CONF") or DEFAULT_CONF


def supervisorctl() -> str | None:
    beside = Path(sys.executable).parent / "supervisorctl"  # install.sh puts supervisor in pair's venv
    return str(beside) if beside.exists() else shutil.which("supervisorctl")


def ctl(*args: str) -> subprocess.CompletedProcess[str] | None:
    program = supervisorctl()
    if program is None:
        return None
    return subprocess.run([program, "-c", conf_path(), *args], capture_output=True, text=True, timeout=30, check=False)


def ensure_agent() -> str:
    """Start the `pair-agent` program if it is not running; return a line to show if that failed.

    A running agent is left alone: it picks up a new registration by itself within a second, and
    restarting it would briefly report the Space as stopping."""
    status = ctl("status", "pair-agent")
    if status is None or status.returncode == SUPERVISORD_DOWN:
        return (
            f"note: supervisord is not running, so neither is the agent. Start it with "
            f"`supervisord -c {conf_path()}` (the Devcontainer's postStartCommand)."
        )
    if status.returncode not in (RUNNING, NOT_RUNNING):
        return f"note: supervisord has no pair-agent program ({status.stdout.strip() or status.stderr.strip()})."
    if status.returncode == RUNNING:
        return ""
    done = ctl("start", "pair-agent")
    if done is None or done.returncode != 0:
        output = (done.stdout + done.stderr).strip() if done else ""
        return f"note: could not start pair-agent through supervisord: {output}"
    return ""
