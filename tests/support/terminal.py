"""Driving interactive programs through a real pseudo-terminal, and reading what they show.

prompt_toolkit redraws by diffing screens: after a key press it writes only the cells that
changed, with cursor movements in between, so the raw output never contains e.g. "1 item" as one
string. `Terminal` therefore feeds everything the child writes into a tiny VT100 screen (`Screen`,
enough for what prompt_toolkit emits) and waits until the *screen* shows the text: with a
deadline, never a fixed sleep.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from pathlib import Path

import pexpect

ROWS, COLS = 24, 100
UP, DOWN, ESC, CTRL_C = "\x1b[A", "\x1b[B", "\x1b", "\x03"

_CSI = re.compile(r"\x1b\[([?>=]?)([0-9;]*)([ -/]*)([@-~])")
_OSC = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")
_TEXT = re.compile(r"[^\x00-\x1f\x1b\x7f]+")


class Screen:
    """A minimal VT100 screen: enough of xterm for prompt_toolkit's output (and a full reset, which
    `pair spaces terminal` sends before a reconnect's scrollback)."""

    def __init__(self, rows: int, cols: int) -> None:
        self.rows, self.cols = rows, cols
        self.cells = [[" "] * cols for _ in range(rows)]
        self.row = self.col = 0
        self.autowrap = True
        self._pending = ""

    def feed(self, data: str) -> list[str]:
        """Interpret `data`; returns what the terminal answers (cursor position reports)."""
        replies: list[str] = []
        data = self._pending + data
        i = 0
        while i < len(data):
            ch = data[i]
            if ch == "\x1b":
                m = _CSI.match(data, i) or _OSC.match(data, i)
                if m is None:
                    if i + 1 >= len(data) or data[i + 1] in "[]":
                        break  # an escape sequence cut in two by the read: wait for the rest
                    if data[i + 1] == "c":  # RIS, a full reset: a clean screen, the cursor home
                        self.cells = [[" "] * self.cols for _ in range(self.rows)]
                        self.row = self.col = 0
                        self.autowrap = True
                    i += 2  # another two-character escape (ESC = ESC > ESC 7 ...): nothing to draw
                    continue
                if m.re is _CSI:
                    replies.extend(self._csi(m.group(1), m.group(2), m.group(3), m.group(4)))
                i = m.end()
            elif ch == "\r":
                self.col = 0
                i += 1
            elif ch == "\n":
                self._linefeed()
                i += 1
            elif ch == "\b":
                self.col = max(0, min(self.col, self.cols - 1) - 1)
                i += 1
            elif ch == "\t":
                self.col = min(self.cols - 1, (self.col // 8 + 1) * 8)
                i += 1
            elif ch < " " or ch == "\x7f":
                i += 1  # bell and other controls
            else:
                m = _TEXT.match(data, i)
                assert m is not None
                for c in m.group():
                    self._put(c)
                i = m.end()
        self._pending = data[i:]
        return replies

    def _linefeed(self) -> None:
        if self.row == self.rows - 1:
            self.cells.pop(0)
            self.cells.append([" "] * self.cols)
        else:
            self.row += 1

    def _put(self, c: str) -> None:
        if self.col >= self.cols:
            if self.autowrap:
                self.col = 0
                self._linefeed()
            else:
                self.col = self.cols - 1
        self.cells[self.row][self.col] = c
        self.col += 1

    def _csi(self, private: str, params: str, _inter: str, final: str) -> list[str]:
        args = [int(p) if p else 0 for p in params.split(";")] if params else []
        n = max(1, args[0]) if args else 1
        col = min(self.col, self.cols - 1)
        if private == "?":
            if args == [7]:
                self.autowrap = final == "h"
        elif final == "A":
            self.row, self.col = max(0, self.row - n), col
        elif final == "B":
            self.row, self.col = min(self.rows - 1, self.row + n), col
        elif final == "C":
            self.col = min(self.cols - 1, col + n)
        elif final == "D":
            self.col = max(0, col - n)
        elif final == "G":
            self.col = min(self.cols - 1, n - 1)
        elif final in "Hf":
            row = args[0] if args else 1
            column = args[1] if len(args) > 1 else 1
            self.row = min(self.rows - 1, max(1, row) - 1)
            self.col = min(self.cols - 1, max(1, column) - 1)
        elif final == "K":
            mode = args[0] if args else 0
            line = self.cells[self.row]
            start, stop = {0: (col, self.cols), 1: (0, col + 1)}.get(mode, (0, self.cols))
            line[start:stop] = [" "] * (stop - start)
        elif final == "J":
            mode = args[0] if args else 0
            if mode == 0:
                self.cells[self.row][col:] = [" "] * (self.cols - col)
                for r in range(self.row + 1, self.rows):
                    self.cells[r] = [" "] * self.cols
            elif mode in (2, 3):
                self.cells = [[" "] * self.cols for _ in range(self.rows)]
        elif final == "n" and args == [6]:
            return [f"\x1b[{self.row + 1};{col + 1}R"]
        return []  # colours (m), modes (h/l), cursor shape (q)...: nothing to draw

    def lines(self) -> list[str]:
        return ["".join(row).rstrip() for row in self.cells]

    def display(self) -> str:
        return "\n".join(self.lines()).rstrip("\n")


def line(text: str) -> re.Pattern[str]:
    """What `Terminal.expect_screen` takes for a whole screen line."""
    return re.compile(rf"^{re.escape(text)}$", re.MULTILINE)


def tty_env(base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """`base` (default: this process's environment) as an xterm of the spawned size: no
    COLUMNS/LINES or PROMPT_TOOLKIT_* settings that would override what the terminal reports."""
    env = {
        k: v
        for k, v in (os.environ if base is None else base).items()
        if not k.startswith("PROMPT_TOOLKIT_") and k not in ("COLUMNS", "LINES")
    }
    env["TERM"] = "xterm-256color"
    env.update(extra)
    return env


class Terminal:
    """A command running in a pseudo-terminal of `rows` x `cols`, seen through a `Screen`.

    Both its stdout and stderr are the terminal, so everything it prints lands on the screen and
    in `transcript` (the raw output, escape sequences included)."""

    def __init__(
        self,
        command: str,
        args: list[str],
        *,
        cwd: Path | str,
        env: Mapping[str, str],
        rows: int = ROWS,
        cols: int = COLS,
        timeout: float = 20.0,
    ) -> None:
        self.timeout = timeout
        self.screen = Screen(rows, cols)
        self.transcript = ""
        self.exitstatus: int | None = None
        self.signalstatus: int | None = None
        self.child = pexpect.spawn(
            command,
            args,
            cwd=str(cwd),
            env=dict(env),
            dimensions=(rows, cols),
            encoding="utf-8",
            codec_errors="replace",
            timeout=timeout,
        )

    def _read(self, deadline: float) -> bool:
        """Read what the child wrote (waiting for it until `deadline`); False at end of file."""
        try:
            data = self.child.read_nonblocking(65536, timeout=max(0.0, deadline - time.monotonic()))
        except pexpect.EOF:
            return False
        except pexpect.TIMEOUT:
            return True
        self.transcript += data
        for reply in self.screen.feed(data):
            self.child.send(reply)
        return True

    def display(self) -> str:
        return self.screen.display()

    def expect_screen(self, *wanted: str | re.Pattern[str]) -> str:
        """Wait until the screen shows every `wanted` (a substring, or a regex searched in the
        screen's text); returns the screen's text. Fails, showing the screen, at the deadline or
        if the child exits first."""

        def shown(screen: str) -> bool:
            return all((w in screen) if isinstance(w, str) else bool(w.search(screen)) for w in wanted)

        deadline = time.monotonic() + self.timeout
        while not shown(self.display()):
            if time.monotonic() >= deadline:
                raise AssertionError(f"the screen never showed {wanted!r}; it shows:\n{self.display()}")
            if not self._read(deadline):
                raise AssertionError(
                    f"the program ended before the screen showed {wanted!r}; it shows:\n{self.display()}"
                )
        return self.display()

    def send(self, keys: str) -> None:
        self.child.send(keys)

    def wait_exit(self) -> int | None:
        """Read until the child closes the terminal, then reap it: its exit status (None if a
        signal ended it; see `signalstatus`)."""
        deadline = time.monotonic() + self.timeout
        while self._read(deadline):
            if time.monotonic() >= deadline:
                raise AssertionError(f"the program did not exit; the screen shows:\n{self.display()}")
        # End of file: the child closed the terminal, so it is exiting and has nothing left to
        # write; wait() reaps it rather than close() killing it if it is a moment slow.
        self.child.wait()
        self.child.close()
        self.exitstatus, self.signalstatus = self.child.exitstatus, self.child.signalstatus
        return self.exitstatus

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)
        self.child.close(force=True)
