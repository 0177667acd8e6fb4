"""The shared harness: timing, repeats, statistics, targets, the progress line, the table, JSON.

Every figure compares our median with a baseline median measured in the same run, on the same
machine, usually interleaved with it (ours, baseline, ours, …), because these machines drift by
±30% between minutes (docs/performance.md): ratios hold, absolute times do not.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
VENV_BIN = Path(sys.executable).parent


# -- statistics -------------------------------------------------------------------------------


@dataclass
class Stats:
    samples: list[float]

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    def as_json(self) -> dict[str, Any]:
        return {"n": self.n, "min": self.min, "median": self.median, "max": self.max, "samples": self.samples}


@dataclass
class Target:
    """What a figure must reach. kind: "ratio<=", "ratio>=" (ours/baseline), "<=", ">=" (ours,
    in the figure's unit), or "report" (no pass/fail)."""

    kind: str
    value: float = 0.0

    def text(self, unit: str) -> str:
        if self.kind == "report":
            return "report"
        if self.kind.startswith("ratio"):
            return f"{self.kind[5:].replace('<=', '≤ ').replace('>=', '≥ ')}{self.value:g}×"
        return f"{self.kind.replace('<=', '≤ ').replace('>=', '≥ ')}{self.value:g} {unit}"

    def passed(self, ours: float, ratio: float | None) -> bool | None:
        if self.kind == "report":
            return None
        if self.kind.startswith("ratio"):
            if ratio is None or math.isnan(ratio):
                return False
            return ratio <= self.value if self.kind == "ratio<=" else ratio >= self.value
        return ours <= self.value if self.kind == "<=" else ours >= self.value


@dataclass
class Figure:
    key: str
    name: str
    unit: str
    ours: Stats
    baseline: Stats | None
    baseline_name: str
    target: Target
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline.median == 0:
            return None
        return self.ours.median / self.baseline.median

    @property
    def passed(self) -> bool | None:
        return self.target.passed(self.ours.median, self.ratio)

    @property
    def verdict(self) -> str:
        return {True: "pass", False: "FAIL", None: "—"}[self.passed]

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "figure": self.name,
            "unit": self.unit,
            "ours": self.ours.as_json(),
            "baseline": self.baseline.as_json() if self.baseline else None,
            "baseline_name": self.baseline_name,
            "ratio": self.ratio,
            "target": self.target.text(self.unit),
            "target_kind": self.target.kind,
            "target_value": self.target.value,
            "pass": self.passed,
            "notes": self.notes,
            **({"extra": self.extra} if self.extra else {}),
        }


def fmt(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    a = abs(value)
    text = (
        f"{value:,.0f}"
        if a >= 1000
        else f"{value:.0f}"
        if a >= 100
        else f"{value:.1f}"
        if a >= 10
        else (f"{value:.2f}" if a >= 0.1 else f"{value:.3f}")
    )
    return f"{text} {unit}".strip()


def fmt_ratio(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio:.2f}×"


# -- the progress line ------------------------------------------------------------------------


class Progress:
    """One status line on stderr (rewritten in place on a terminal), and a line per result."""

    def __init__(self, total_steps: int) -> None:
        self.total = total_steps
        self.step_no = 0
        self.step_name = ""
        self.started = time.monotonic()
        self.tty = sys.stderr.isatty()
        self._last = ""
        self.loads: list[float] = [load_average()]  # sampled at every note: how busy the machine was

    def _clock(self) -> str:
        s = int(time.monotonic() - self.started)
        return f"{s // 60:02d}:{s % 60:02d}"

    def step(self, name: str) -> None:
        self.step_no += 1
        self.step_name = name
        self.note("starting")

    def note(self, message: str) -> None:
        self.loads.append(load_average())
        line = f"[{self._clock()}] ({self.step_no}/{self.total}) {self.step_name}: {message}"
        if self.tty:
            width = shutil.get_terminal_size((100, 20)).columns
            sys.stderr.write("\r\033[K" + line[: width - 1])
        elif line != self._last:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()
        self._last = line

    def result(self, fig: Figure) -> None:
        base = f" vs {fmt(fig.baseline.median, fig.unit)}" if fig.baseline else ""
        line = (
            f"  {fig.verdict:>4}  {fig.name}: {fmt(fig.ours.median, fig.unit)}{base}"
            f" ({fmt_ratio(fig.ratio)}; target {fig.target.text(fig.unit)})"
        )
        self.say(line)

    def say(self, line: str) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K")
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def load_average() -> float:
    """The 1-minute load average: other work on the machine skews every figure."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0


# -- timing -----------------------------------------------------------------------------------


def run_once(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    *,
    check: bool = True,
    cwd: Path | None = None,
    stdin: int | None = subprocess.DEVNULL,
) -> float:
    """Wall time of one run of a command, in seconds (spawn to exit, output discarded)."""
    start = time.perf_counter()
    proc = subprocess.run(
        list(argv),
        env=dict(env) if env is not None else None,
        cwd=cwd,
        stdin=stdin,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.decode()[-2000:]}")
    return elapsed


def interleave(
    progress: Progress,
    label: str,
    ours: Callable[[], float],
    baseline: Callable[[], float],
    repeats: int,
    warmup: int = 1,
) -> tuple[Stats, Stats]:
    """Call ours/baseline alternately `repeats` times each (after `warmup` unrecorded rounds)."""
    a: list[float] = []
    b: list[float] = []
    for i in range(warmup + repeats):
        progress.note(f"{label} {'warm-up' if i < warmup else f'run {i - warmup + 1}/{repeats}'}")
        x, y = ours(), baseline()
        if i >= warmup:
            a.append(x)
            b.append(y)
    return Stats(a), Stats(b)


def rate(seconds: list[float], amount: float) -> list[float]:
    return [amount / s for s in seconds]


def ms(seconds: Stats) -> Stats:
    return Stats([s * 1000 for s in seconds.samples])


# -- the report -------------------------------------------------------------------------------


HEADERS = ("figure", "ours (median)", "baseline (median)", "ratio", "target", "result")


def rows(figures: Sequence[Figure], *, ranges: bool) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for f in figures:
        ours = fmt(f.ours.median, f.unit)
        base = fmt(f.baseline.median, f.unit) if f.baseline else "—"
        if ranges:
            ours += f" ({fmt(f.ours.min)}–{fmt(f.ours.max)})"
            if f.baseline:
                base += f" ({fmt(f.baseline.min)}–{fmt(f.baseline.max)})"
        if f.baseline:
            base = f"{base} {f.baseline_name}".strip() if not ranges else base
        out.append((f.name, ours, base, fmt_ratio(f.ratio), f.target.text(f.unit), f.verdict))
    return out


def text_table(figures: Sequence[Figure]) -> str:
    body = rows(figures, ranges=False)
    body = [
        (r[0], r[1], fmt(f.baseline.median, f.unit) if f.baseline else "—", *r[3:])
        for r, f in zip(body, figures, strict=True)
    ]
    widths = [max([len(h), *(len(r[i]) for r in body)]) for i, h in enumerate(HEADERS)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(HEADERS), sep, *(line(r) for r in body)])


def markdown_table(figures: Sequence[Figure]) -> str:
    head = "| figure | ours: median (min–max) | baseline | baseline: median (min–max) | ratio | target | result |"
    out = [head, "|---|--:|---|--:|--:|--:|:-:|"]
    for f in figures:
        ours = f"{fmt(f.ours.median, f.unit)} ({fmt(f.ours.min)}–{fmt(f.ours.max)}, n={f.ours.n})"
        if f.baseline:
            base = f"{fmt(f.baseline.median, f.unit)} ({fmt(f.baseline.min)}–{fmt(f.baseline.max)}, n={f.baseline.n})"
        else:
            base = "—"
        verdict = {"pass": "pass", "FAIL": "**FAIL**", "—": "—"}[f.verdict]
        out.append(
            f"| {f.name} | {ours} | {f.baseline_name or '—'} | {base} | {fmt_ratio(f.ratio)} "
            f"| {f.target.text(f.unit)} | {verdict} |"
        )
    return "\n".join(out)


def _first_line(argv: Sequence[str]) -> str:
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else ""


def machine() -> dict[str, Any]:
    from importlib import metadata

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = 0.0
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem_gb = round(kb / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    os_name = ""
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for pkg in ("uvicorn", "starlette", "websockets", "uvloop", "httptools", "PyJWT", "cryptography", "msgspec"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    commit = _first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = bool(
        subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    )
    return {
        "os": os_name,
        "kernel": platform.release(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "python": f"{platform.python_implementation()} {platform.python_version()} ({sys.executable})",
        "openssh": _first_line(["ssh", "-V"]),
        "wrk": _first_line(["wrk", "--version"]).split(" [")[0],
        "packages": versions,
        "commit": commit + (" (with uncommitted changes)" if dirty else ""),
    }


def write_json(
    path: Path, figures: Sequence[Figure], info: dict[str, Any], seconds: float, failures: Sequence[str]
) -> None:
    doc = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "duration_seconds": round(seconds, 1),
        "machine": info,
        "figures": [f.as_json() for f in figures],
        "errors": list(failures),
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")
