"""Starting real processes and waiting for what they print (never for a fixed time)."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

VENV_BIN = Path(sys.executable).parent


def executable(name: str) -> str:
    """A console script of this virtualenv (`pair`, `pair-broker`), by absolute path."""
    return str(VENV_BIN / name)


class Output:
    """Collects a process's output lines on a thread, so waiting for a line never blocks on a
    pipe whose data already sits in a Python buffer."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        self.lines: list[str] = []
        self._new: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(proc.stdout,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line)
            self._new.put(line)
        self._new.put(None)

    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """Wait until a new line matches `pattern`; fail with everything printed otherwise."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._new.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"timed out waiting for {pattern!r}; output so far:\n{self.text()}") from None
            if line is None:
                raise AssertionError(f"the process ended before printing {pattern!r}; output:\n{self.text()}")
            match = regex.search(line)
            if match:
                return match

    def finish(self, timeout: float = 10.0) -> None:
        self._thread.join(timeout)


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


def ctrl_c(proc: subprocess.Popen[str]) -> None:
    """What a terminal does on Ctrl-C: SIGINT to the whole foreground process group (the process's
    and every child's in it), which `proc` was started as (a session of its own)."""
    os.killpg(proc.pid, signal.SIGINT)


@contextlib.contextmanager
def ended_by_ctrl_c(proc: subprocess.Popen[str], output: Output, timeout: float = 120.0) -> Iterator[None]:
    """Run the block while `proc` (started in a session of its own, stdout piped into `output`)
    runs, then stop it as a person does, with Ctrl-C, and check that it exits 0 within `timeout`
    seconds. Whatever happens in the block, `proc` is then ended (SIGTERM, stop), its output
    read to the end and its pipe closed."""
    try:
        yield
        ctrl_c(proc)
        assert proc.wait(timeout=timeout) == 0, output.text()
    finally:
        stop(proc, timeout=timeout)
        output.finish()
        assert proc.stdout is not None
        proc.stdout.close()


def holding(work: Path) -> list[int]:
    """The processes (of any mount namespace) that have a mount under `work`: a root's."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if f" {work}/" in (entry / "mountinfo").read_text():
                    found.append(int(entry.name))
            except OSError:
                continue  # ended meanwhile
    return found


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAIR_", "XDG_"))}
    env.update(extra)
    return env
