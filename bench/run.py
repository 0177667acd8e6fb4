"""`make bench`: run the benchmark suite, print one table, write bench/results.json and (for a
full run) the table in docs/performance.md.

    .venv/bin/python -m bench.run [--only NAME ...] [--quick] [--no-docs]

Every server (the broker, the baseline app, the Space's container) runs on 127.0.0.1 and is
stopped when the suite ends, also on Ctrl-C or a failure.
"""

from __future__ import annotations

import argparse
import compileall
import importlib
import os
import resource
import signal
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from contextlib import ExitStack
from pathlib import Path
from types import ModuleType
from typing import Any

from bench import harness
from bench.harness import Figure, Progress

MODULES = ("startup", "http", "tokens", "relay", "ssh", "ports", "terminal", "agents", "replicas")
RESULTS = harness.BENCH_DIR / "results.json"
DOC = harness.ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- bench:results:begin -->", "<!-- bench:results:end -->"


NOFILE = 32768  # 10,000 agents are 10,000 sockets in one broker (a service manager sets LimitNOFILE)


def raise_open_files(want: int) -> int:
    """Raise this process's open-files limit (which the servers and helpers it starts inherit) to
    `want`, past the hard limit when allowed (root); returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return want
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want) if hard != resource.RLIM_INFINITY else hard))
    except (ValueError, OSError):  # not root: as far as the hard limit goes
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # so every `finally` stops what it started


def machine_line(info: dict[str, Any]) -> str:
    p = info["packages"]
    return (
        f"{info['os']}, kernel {info['kernel']}, {info['cores']} × {info['cpu']}, {info['memory_gb']} GB RAM; "
        f"{info['python']}; uvicorn {p['uvicorn']}, starlette {p['starlette']}, websockets {p['websockets']}, "
        f"uvloop {p['uvloop']}, httptools {p['httptools']}; {info['openssh']}; {info['wrk']}; "
        f"commit {info['commit']}; 1-min load average during the run: median {info['load_average']['median']:.2f},"
        f" max {info['load_average']['max']:.2f}"
    )


def update_doc(figures: list[Figure], info: dict[str, Any], seconds: float) -> bool:
    if not DOC.exists():
        return False
    text = DOC.read_text()
    if BEGIN not in text or END not in text:
        return False
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    block = "\n".join(
        [
            BEGIN,
            f"Run {when} in {seconds / 60:.1f} min on: {machine_line(info)}.",
            "",
            harness.markdown_table(figures),
            END,
        ]
    )
    start, end = text.index(BEGIN), text.index(END) + len(END)
    DOC.write_text(text[:start] + block + text[end:])
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", action="append", choices=MODULES, help="run only these benchmarks (repeatable)")
    parser.add_argument("--quick", action="store_true", help="fewer, shorter repeats (for trying the suite out)")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite the table in docs/performance.md")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (its path is printed)")
    args = parser.parse_args(argv)

    names = [n for n in MODULES if n in args.only] if args.only else list(MODULES)
    # tests/support/broker.py imports Starlette's TestClient, which warns about httpx; not ours.
    warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
    raise_open_files(NOFILE)
    modules: list[ModuleType] = [importlib.import_module(f"bench.bench_{n}") for n in names]
    # Time `pair` as an install has it: pip compiles a wheel's modules when it installs them. A
    # checkout run with PYTHONDONTWRITEBYTECODE=1 (set on these machines) would otherwise compile
    # every module edited since its last .pyc on each start (10-30 ms of connect and --help).
    compileall.compile_dir(harness.ROOT / "pair", quiet=1)
    signal.signal(signal.SIGTERM, _interrupt)
    os.umask(0o022)

    progress = Progress(len(modules))
    if progress.loads[0] > 0.5:
        progress.say(f"note: the machine is busy (load average {progress.loads[0]:.2f}); figures will be noisier.")
    figures: list[Figure] = []
    failures: list[str] = []
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="pair-bench-"))
    try:
        from bench.world import World

        with ExitStack() as stack:
            world = World(tmp, stack, progress, quick=args.quick)
            for name, module in zip(names, modules, strict=True):
                progress.step(module.NAME)
                try:
                    figures += module.run(world)
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # one broken benchmark must not hide the others
                    failures.append(f"{name}: {type(exc).__name__}: {exc}")
                    progress.say(f"  ERROR in {name}: {type(exc).__name__}: {exc}")
                    traceback.print_exc(file=sys.stderr)
            progress.note("stopping servers")
    except KeyboardInterrupt:
        progress.say("interrupted; servers stopped.")
        return 130
    finally:
        progress.done()
        if args.keep:
            print(f"scratch directory kept: {tmp}", file=sys.stderr)
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    seconds = time.monotonic() - started

    info = harness.machine()
    info["load_average"] = {
        "start": progress.loads[0],
        "max": max(progress.loads),
        "median": statistics.median(progress.loads),
    }
    print()
    print(harness.text_table(figures))
    print()
    missed = [f for f in figures if f.passed is False]
    print(
        f"{len(figures)} figures in {seconds / 60:.1f} min; "
        f"{sum(f.passed is True for f in figures)} pass, {len(missed)} miss their target"
        + (f", {len(failures)} benchmark(s) failed to run" if failures else "")
        + "."
    )
    for line in failures:
        print(f"error: {line}")
    results = RESULTS if not args.only else RESULTS.with_name("results-partial.json")
    harness.write_json(results, figures, info, seconds, failures)
    print(f"wrote {results.relative_to(harness.ROOT)}", end="")
    if not args.only and not args.no_docs and not failures and update_doc(figures, info, seconds):
        print(f" and the table in {DOC.relative_to(harness.ROOT)}", end="")
    print()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
