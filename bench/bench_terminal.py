"""Terminals through the broker, for real (issue 11), in the Space's container from
tests/support/container.py:

- keystroke round trip: one byte typed to its echo (the PTY's line discipline echoes it, under
  `cat`), through a terminal stream (pair.api.terminal's protocol: WebSocket → broker splice →
  agent → PTY) vs through `ssh -tt` via the relay (`pair spaces proxy` → broker → agent → sshd →
  PTY), interleaved; target ≤ 1.2×;
- 20 terminal streams printing at once (10 terminals, the agent's per-Space limit, each with its
  starter and one viewer attached): the broker's CPU (cores) and RSS while they stream, and the
  bytes delivered, reported.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from websockets.asyncio.client import connect as aconnect
from websockets.sync.client import ClientConnection, connect

from bench.bench_ssh import key_only, space
from bench.harness import Figure, Stats, Target, interleave, ms
from bench.world import World, cpu_window, rss_mb, settle
from pair.api import endpoints as ep
from pair.api import terminal as tp

NAME = "Terminals: keystroke round trip vs ssh through the relay; 20 terminal streams printing at once"
EMAIL = "user0501@example.com"  # a seeded user: the Space "box" is theirs
KEYS = 20  # keystrokes per sample; a sample is their mean round trip
OUTPUT_BYTES = 3_000_000  # random bytes each terminal prints (base64: 4/3 of it)


def _token(env: dict[str, str]) -> str:
    import json
    from pathlib import Path

    return str(json.loads((Path(env["PAIR_CONFIG_DIR"]) / "session.json").read_text())["token"])


def _space_id(env: dict[str, str]) -> str:
    import json

    from tests.support.processes import executable

    listed = subprocess.run(
        [executable("pair"), "spaces", "list", "--json"], env=env, capture_output=True, text=True, check=True
    )
    return next(str(s["id"]) for s in json.loads(listed.stdout) if s["name"] == "box")


def _until(ws: ClientConnection, wanted: bytes) -> None:
    seen = b""
    while wanted not in seen:
        frame = ws.recv()
        if isinstance(frame, bytes):
            seen = (seen + frame)[-256:]


@contextmanager
def terminal_cat(url: str, token: str) -> Iterator[ClientConnection]:
    """A new terminal running `cat`, ready for keystrokes."""
    with connect(url + "?cols=80&rows=24", additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        ws.send(b"echo ready-$((1+1)); exec cat\r")
        _until(ws, b"ready-2\r\n")
        ws.send(b"r")
        _until(ws, b"r")  # cat is reading: the line discipline echoes what comes
        yield ws
        ws.send(b"\x04\x04")


def round_trips_terminal(ws: ClientConnection) -> float:
    start = time.perf_counter()
    for _ in range(KEYS):
        ws.send(b"x")
        while True:
            frame = ws.recv()
            if isinstance(frame, bytes) and b"x" in frame:
                break
    return (time.perf_counter() - start) / KEYS


def round_trips_ssh(proc: subprocess.Popen[bytes]) -> float:
    assert proc.stdin is not None
    assert proc.stdout is not None
    out = proc.stdout.fileno()
    start = time.perf_counter()
    for _ in range(KEYS):
        os.write(proc.stdin.fileno(), b"x")
        while b"x" not in os.read(out, 4096):
            pass
    return (time.perf_counter() - start) / KEYS


async def _stream_all(url: str, token: str, terminals: int) -> tuple[int, float]:
    """Open `terminals` terminals, attach a second stream to each, have each print
    OUTPUT_BYTES of base64 at once; (bytes received on all streams, seconds)."""
    headers = {"Authorization": f"Bearer {token}"}
    starters = [
        await aconnect(url + "?cols=120&rows=40", additional_headers=headers, max_size=None) for _ in range(terminals)
    ]
    viewers = []
    for ws in starters:
        hello = tp.decode_server(await ws.recv())
        assert isinstance(hello, tp.Hello)
        viewers.append(
            await aconnect(f"{url}?join={hello.terminal_id}&read_only=true", additional_headers=headers, max_size=None)
        )
    marker = b"end-of-output-2"
    received = 0

    async def drain(ws: object) -> None:
        nonlocal received
        tail = b""
        while marker not in tail:
            frame = await ws.recv()  # type: ignore[attr-defined]
            if isinstance(frame, bytes):
                received += len(frame)
                tail = (tail + frame)[-64:]

    start = time.perf_counter()
    command = f"head -c {OUTPUT_BYTES} /dev/urandom | base64 -w 120; echo end-of-output-$((1+1))\r".encode()
    for ws in starters:
        await ws.send(command)
    await asyncio.gather(*(drain(ws) for ws in starters + viewers))
    seconds = time.perf_counter() - start
    for ws in starters:
        await ws.send(b"exit\r")
    for ws in starters + viewers:
        await ws.close()
    return received, seconds


def run(world: World) -> list[Figure]:
    p = world.progress
    figures = []
    with space(world, "terminal-user", EMAIL) as (_box, env, key, relay):
        token, space_id = _token(env), _space_id(env)
        url = ep.websocket_url(world.url, ep.SPACE_TERMINAL.format(space_id=space_id))
        ssh = subprocess.Popen(
            [
                "ssh",
                "-tt",
                *relay,
                *key_only(key),
                "box.pair",
                "exec cat",
            ],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            bufsize=0,
        )
        try:
            assert ssh.stdin is not None
            assert ssh.stdout is not None
            os.write(ssh.stdin.fileno(), b"r")
            seen = b""
            while b"r" not in seen:
                seen += os.read(ssh.stdout.fileno(), 4096)
            with terminal_cat(url, token) as ws:
                n = 5 if world.quick else 15
                ours, base = interleave(
                    p, "one keystroke to its echo", lambda: round_trips_terminal(ws), lambda: round_trips_ssh(ssh), n
                )
        finally:
            ssh.kill()
            ssh.wait()
        fig = Figure(
            "terminal_keystroke",
            "Keystroke round trip (one byte typed to its echo) through a terminal stream",
            "ms",
            ms(ours),
            ms(base),
            "`ssh -tt` through the relay",
            Target("ratio<=", 1.2),
        )
        p.result(fig)
        figures.append(fig)

        pid = world.broker_pid()
        settle(pid)
        rss_before = rss_mb(pid)
        peak = [rss_before]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.1):
                peak.append(rss_mb(pid))

        sampler = threading.Thread(target=sample, daemon=True)
        p.note("20 terminal streams printing at once")
        sampler.start()
        try:
            with cpu_window(pid) as cpu:
                received, seconds = asyncio.run(_stream_all(url, token, 10))
        finally:
            stop.set()
            sampler.join()
        mib = received / (1 << 20)
        notes = (
            f"10 terminals × 2 streams (starter + viewer); {mib:.0f} MiB delivered in {seconds:.1f} s "
            f"({mib / seconds:.0f} MiB/s); RSS {rss_before:.0f} MiB before"
        )
        for key_name, title, unit, value in (
            ("terminals20_cpu", "Broker CPU while 20 terminal streams print at once", "cores", cpu[0]),
            ("terminals20_rss", "Broker peak RSS while 20 terminal streams print at once", "MiB", max(peak)),
        ):
            fig = Figure(
                key_name,
                title,
                unit,
                Stats([value]),
                None,
                "",
                Target("report"),
                notes=notes,
                extra={"mib": mib, "seconds": seconds, "rss_before_mib": rss_before},
            )
            p.result(fig)
            figures.append(fig)
    return figures
