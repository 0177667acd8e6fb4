"""Starting real processes and waiting for what they print (never for a fixed time)."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def executable(name: str) -> str:
    """A console script of this virtualenv (`pair`, `pair-broker`), by absolute path."""
    return str(VENV_BIN / name)


@dataclass
class Output:
    """Lines a process printed so far, kept for error messages."""

    lines: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(self.lines)


def wait_for_line(proc: subprocess.Popen[str], pattern: str, output: Output, timeout: float = 20.0) -> re.Match[str]:
    """Read `proc`'s stdout until a line matches `pattern`; fail with what it printed otherwise."""
    assert proc.stdout is not None
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {pattern!r}; output so far:\n{output.text()}")
            if not sel.select(remaining):
                continue
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(
                    f"process exited ({proc.wait()}) before printing {pattern!r}; output:\n{output.text()}"
                )
            output.lines.append(line)
            match = regex.search(line)
            if match:
                return match
    finally:
        sel.close()


def stop(proc: subprocess.Popen[str], timeout: float = 10.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    return proc.returncode


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAIR_", "XDG_"))}
    env.update(extra)
    return env
