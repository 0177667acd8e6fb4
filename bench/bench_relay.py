"""Relay throughput: 200 MiB through a tunnel. A person's WebSocket to /api/v1/spaces/ID/tunnel
→ the broker's splice → the real `pair agent` (through the launcher, PAIR_HOME with its
registration) → a local TCP sink standing in for sshd ($PAIR_HOME/ssh-port). Baseline: the same
bytes straight to the same sink over asyncio TCP. Tunnel set-up is not timed (see the ssh figure)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import httpx

from bench.harness import Figure, Stats, Target, interleave
from bench.sink import GREETING
from bench.world import World
from pair.api.endpoints import SPACE_TUNNEL, websocket_url
from tests.support.processes import Output, clean_env, stop

NAME = "relay: 200 MiB through a tunnel vs direct asyncio TCP"
MIB = 1 << 20
SIZE = 200 * MIB
CHUNK = 64 * 1024


@contextmanager
def real_agent(world: World, sink_port: int) -> Iterator[str]:
    """The real `pair agent` for the seeded relay Space; yields its Space id once it is running."""
    from pair.container import launcher

    seeded = world.seeded
    agent = seeded.relay_agent
    home = world.tmp / "relay-home"
    home.mkdir(mode=0o755, exist_ok=True)
    launcher.write(home / "pair", home)
    (home / "agent.json").write_text(
        json.dumps(
            {"url": world.url, "space_id": agent.space_id, "space_name": "relay", "credential": agent.credential}
        )
    )
    (home / "instance-id").write_text(agent.instance_id + "\n")
    (home / "ssh-port").write_text(f"{sink_port}\n")
    proc = subprocess.Popen(
        [str(home / "pair"), "agent"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=clean_env(PAIR_SUPERVISOR_CONF=str(home / "no-supervisord.conf")),  # no supervisord: sshd "runs"
    )
    output = Output(proc)
    try:
        output.wait_for(r"pair agent: connected", timeout=30)
        headers = {"Authorization": f"Bearer {seeded.relay_session}"}
        deadline = time.monotonic() + 30
        while httpx.get(f"{world.url}/api/v1/spaces/{agent.space_id}", headers=headers).json()["state"] != "running":
            if time.monotonic() > deadline:
                raise RuntimeError("the relay Space did not come up:\n" + output.text())
            time.sleep(0.1)
        yield agent.space_id
    finally:
        stop(proc)
        output.finish(2)
        assert proc.stdout is not None
        proc.stdout.close()


async def _through_tunnel(url: str, session: str, mode: bytes, size: int) -> float:
    from websockets.asyncio.client import connect

    payload = bytes(CHUNK)
    async with connect(
        url, additional_headers={"Authorization": f"Bearer {session}"}, compression=None, max_size=None, open_timeout=15
    ) as ws:
        greeting = b""
        while len(greeting) < len(GREETING):
            greeting += await ws.recv(decode=False)
        assert greeting == GREETING, greeting
        start = time.perf_counter()
        await ws.send(mode + size.to_bytes(8, "big"))
        if mode == b"U":
            for _ in range(size // CHUNK):
                await ws.send(payload)
            assert await ws.recv() == b"k"
        else:
            got = 0
            while got < size:
                got += len(await ws.recv())
        return time.perf_counter() - start


async def _direct(port: int, mode: bytes, size: int) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = bytes(CHUNK)
    try:
        assert await reader.readexactly(len(GREETING)) == GREETING
        start = time.perf_counter()
        writer.write(mode + size.to_bytes(8, "big"))
        if mode == b"U":
            for _ in range(size // CHUNK):
                writer.write(payload)
                await writer.drain()
            assert await reader.readexactly(1) == b"k"
        else:
            got = 0
            while got < size:
                got += len(await reader.read(1 << 20))
        return time.perf_counter() - start
    finally:
        writer.close()


def run(world: World) -> list[Figure]:
    p = world.progress
    _, _, match = world.helper("sink", ready=r"listening on 127.0.0.1:(\d+)")
    port = int(match.group(1))
    figures = []
    repeats = 3 if world.quick else 9  # half a second each: enough pairs for a steady median
    with real_agent(world, port) as space_id:
        url = websocket_url(world.url, SPACE_TUNNEL.format(space_id=space_id))
        session = world.seeded.relay_session
        for mode, label, target in ((b"U", "upload", Target("ratio>=", 0.3)), (b"D", "download", Target("report"))):
            ours, base = interleave(
                p,
                f"200 MiB {label}",
                partial(lambda m: asyncio.run(_through_tunnel(url, session, m, SIZE)), mode),
                partial(lambda m: asyncio.run(_direct(port, m, SIZE)), mode),
                repeats,
            )
            fig = Figure(
                f"relay_{label}",
                f"relay throughput, 200 MiB {label} through a tunnel",
                "MiB/s",
                Stats([SIZE / MIB / s for s in ours.samples]),
                Stats([SIZE / MIB / s for s in base.samples]),
                "direct asyncio TCP",
                target,
                notes="person → broker → pair agent → sink" if mode == b"U" else "sink → pair agent → broker → person",
            )
            p.result(fig)
            figures.append(fig)
    return figures
