"""Shared ports for real: the demo web app (tests/support/apps.py) in the Space's container (the
container of bench_ssh: supervisord, sshd, `pair agent`), shared at level `public` under the
broker's apps domain (`*.localhost`). Ours: through the app's URL (the broker's app proxy → a
`port` stream → the agent → the app), and `pair spaces forward`. Baselines: straight to the app;
for forward, `ssh -N -L` through the same broker (the way in before shared ports)."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from bench.bench_ssh import key_only, space
from bench.harness import Figure, Stats, Target, interleave
from bench.world import World
from tests.support.apps import served
from tests.support.processes import Output, executable, stop

EMAIL = "user0502@example.com"  # a seeded user of its own: the ssh rows' user has a Space "box" already
NAME = "Shared ports: 100 MiB and small GETs through the app URL vs straight; forward vs ssh -L"
MIB = 1 << 20
SIZE = 100 * MIB
CHUNK = 256 * 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _download(url: str, host: str | None = None) -> float:
    headers = {"Host": host} if host else {}
    start = time.perf_counter()
    got = 0
    with httpx.Client(timeout=120) as client, client.stream("GET", url, headers=headers) as response:
        response.raise_for_status()
        for chunk in response.iter_raw(CHUNK):
            got += len(chunk)
    seconds = time.perf_counter() - start
    if got != SIZE:
        raise RuntimeError(f"downloaded {got} bytes of {SIZE}")
    return seconds


def _wrk(url: str, seconds: float, host: str | None = None) -> float:
    """Requests per second of `wrk -t2 -c16` GETting `url` (a small page)."""
    program = shutil.which("wrk")
    if program is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk; `make bench` does it as root)")
    argv = [program, "-t2", "-c16", f"-d{seconds:g}s", "--timeout", "10s"]
    if host:
        argv += ["-H", f"Host: {host}"]
    out = subprocess.run([*argv, url], capture_output=True, text=True, timeout=seconds + 60, check=False)
    match = re.search(r"Requests/sec:\s+([0-9.]+)", out.stdout)
    if out.returncode != 0 or match is None or "Non-2xx" in out.stdout:
        raise RuntimeError(f"wrk failed: {out.stdout[-1500:]} {out.stderr[-800:]}")
    return float(match.group(1))


@contextmanager
def _listening(argv: list[str], env: dict[str, str], port: int, what: str) -> Iterator[None]:
    """Run a forwarder (stopped afterwards) until 127.0.0.1:`port` accepts connections."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = Output(proc)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{what} did not start listening:\n{output.text()}") from None
                time.sleep(0.1)
        yield
    finally:
        stop(proc)
        output.finish(2)
        assert proc.stdout is not None
        proc.stdout.close()


def run(world: World) -> list[Figure]:
    p = world.progress
    figures = []
    repeats = 3 if world.quick else 7
    with space(world, "ports-user", EMAIL) as (_box, env, key, relay), served("app") as app:
        subprocess.run(
            [executable("pair"), "spaces", "ports", "share", str(app.port), "box", "--level", "public"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        listing = json.loads(
            subprocess.run(
                [executable("pair"), "spaces", "ports", "list", "box", "--json"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
        )
        app_url = next(s["url"] for s in listing["shared"] if s["port"] == app.port)
        host = app_url.split("://", 1)[1].rstrip("/")
        through = f"{world.url}/bytes?n={SIZE}&sized=1"
        direct = f"{app.url}/bytes?n={SIZE}&sized=1"

        ours, base = interleave(
            p, "100 MiB through the app URL", lambda: _download(through, host), lambda: _download(direct), repeats
        )
        fig = Figure(
            "ports_download",
            "shared port: 100 MiB download through the app URL",
            "MiB/s",
            Stats([SIZE / MIB / s for s in ours.samples]),
            Stats([SIZE / MIB / s for s in base.samples]),
            "straight from the app",
            Target("ratio>=", 0.3),
            notes="browser → broker (app proxy, h11) → port stream → pair agent → app",
        )
        p.result(fig)
        figures.append(fig)

        seconds = 2 if world.quick else 5
        ours, base = interleave(
            p,
            "small GETs (wrk -c16)",
            lambda: _wrk(world.url + "/", seconds, host),
            lambda: _wrk(app.url + "/", seconds),
            3 if world.quick else 5,
        )
        fig = Figure(
            "ports_small_gets",
            "shared port: small GETs per second through the app URL (wrk -t2 -c16)",
            "req/s",
            ours,
            base,
            "straight to the app",
            Target("report"),
            notes="one agent stream per request (Connection: close to the app)",
        )
        p.result(fig)
        figures.append(fig)

        forward_port, ssh_port = _free_port(), _free_port()
        forward = [executable("pair"), "spaces", "forward", "box", f"{forward_port}:{app.port}"]
        ssh_l = [
            "ssh",
            *relay,
            *key_only(key),
            "-o",
            "ExitOnForwardFailure=yes",
            "-N",
            "-L",
            f"{ssh_port}:127.0.0.1:{app.port}",
            "box.pair",
        ]
        with _listening(forward, env, forward_port, "pair spaces forward"), _listening(ssh_l, env, ssh_port, "ssh -L"):
            ours, base = interleave(
                p,
                "100 MiB: pair spaces forward vs ssh -L",
                lambda: _download(f"http://127.0.0.1:{forward_port}/bytes?n={SIZE}&sized=1"),
                lambda: _download(f"http://127.0.0.1:{ssh_port}/bytes?n={SIZE}&sized=1"),
                repeats,
            )
        fig = Figure(
            "ports_forward",
            "`pair spaces forward`: 100 MiB download",
            "MiB/s",
            Stats([SIZE / MIB / s for s in ours.samples]),
            Stats([SIZE / MIB / s for s in base.samples]),
            "`ssh -N -L` through the relay",
            Target("report"),
            notes="a WebSocket per connection vs one SSH connection's channel",
        )
        p.result(fig)
        figures.append(fig)
    return figures
