"""Talking to supervisord, which runs the Space's sshd and `pair agent`: `supervisorctl` for the
rare commands (start, stop), and supervisord's XML-RPC interface on its unix socket for the
reads the agent repeats every second (a supervisorctl process each time would cost ~100 ms)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pair.container.configs import WITHOUT_SECRETS

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
            f"`{WITHOUT_SECRETS} supervisord -c {conf_path()}` (the Devcontainer's postStartCommand)."
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


class SupervisorError(Exception):
    """supervisord did not answer, or has no such program."""


@dataclass(frozen=True)
class ProcessInfo:
    """One program as supervisord sees it (its `getProcessInfo` struct, the fields we use)."""

    state: str  # STOPPED, STARTING, RUNNING, BACKOFF, STOPPING, EXITED, FATAL or UNKNOWN
    description: str  # supervisord's words, e.g. "Exited too quickly (process log may have details)"
    spawn_error: str  # why supervisord could not even spawn it, e.g. "can't find command '…'"


class Rpc:
    """supervisord's XML-RPC interface, as supervisorctl reaches it (the same configuration's
    [supervisorctl] section, or the URL supervisord hands its children). Blocking: call it from a
    thread. Supervisor's own client code is used, so it is there only where the `supervisor`
    package is importable (install.sh puts it in pair's virtualenv)."""

    def __init__(self, options: Any) -> None:
        self._options = options
        self._proxy: Any = None  # one connection, reused; dropped after an error

    @classmethod
    def open(cls) -> Rpc | None:
        """A client for this container's supervisord, or None if there is no way to reach one."""
        try:
            from supervisor.options import ClientOptions
        except ImportError:
            return None
        args = ["-c", conf_path()] if Path(conf_path()).is_file() else []
        if os.environ.get("SUPERVISOR_SERVER_URL"):  # set by supervisord for the programs it runs
            args += ["-s", os.environ["SUPERVISOR_SERVER_URL"]]
        if not args:
            return None
        options = ClientOptions()
        try:
            options.realize(args=args)
        except (SystemExit, Exception):  # supervisor reports a bad configuration by exiting
            return None
        return cls(options)

    def _call(self, method: str, *args: object) -> Any:
        for attempt in (1, 2):  # a kept connection that supervisord closed meanwhile fails once
            if self._proxy is None:
                self._proxy = self._options.getServerProxy()
            try:
                return getattr(self._proxy.supervisor, method)(*args)
            except Exception as exc:  # socket errors, xmlrpc Faults (BAD_NAME), protocol errors
                fault = getattr(exc, "faultString", None)
                if fault is None:
                    self.close()  # the connection, not the request, failed: start over
                if fault is not None or attempt == 2:
                    raise SupervisorError(fault or f"{type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._proxy is not None:
            with contextlib.suppress(Exception):
                self._proxy("close")()  # xmlrpc.client's way to close the transport's connection
            self._proxy = None

    def process(self, name: str) -> ProcessInfo:
        info = self._call("getProcessInfo", name)
        return ProcessInfo(str(info["statename"]), str(info["description"]), str(info.get("spawnerr") or ""))

    def tail(self, name: str, length: int = 4096) -> str:
        """The last `length` bytes of the program's log (stdout, where pair sends sshd's stderr;
        its stderr log when that is where supervisord keeps it)."""
        for method in ("tailProcessStdoutLog", "tailProcessStderrLog"):
            try:
                text, _, overflow = self._call(method, name, 0, length)
            except SupervisorError:
                continue
            text = str(text).split("\n", 1)[1] if overflow and "\n" in str(text) else str(text)
            if text.strip():
                return text  # without the first line if the log is longer: it may be cut
        return ""
