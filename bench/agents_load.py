"""1,000 agents in one asyncio process: each opens the control channel the real `pair agent`
opens (WebSocket /api/v1/agent/connect, agent credential, no compression, pings every 20 s),
heartbeats at once and then every interval, and takes the broker's replies as the agent does
(keeping the keys version it was given). Connections start spread over --spread seconds.

    python -m bench.agents_load AGENTS.json --interval 10 --spread 10

AGENTS.json: {"url": "http://…", "facts": {…}, "agents": [{"credential", "instance_id"}, …]}.
Prints "connected N/M" as they come up, "all connected", then a status line every 5 s; runs until
SIGTERM, then closes every channel.

One process holds 1,000 agents easily; for 10,000 on 2 cores the benchmark starts several, each
with its share of the agents (`split`), so connecting and heartbeating are not one core's queue."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
from collections.abc import Sequence
from typing import TypeVar

import msgspec
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from pair.api.endpoints import AGENT_CONNECT, websocket_url
from pair.api.models import BrokerMessage, ContainerFacts, Heartbeat, HeartbeatMessage, ReplyMessage

T = TypeVar("T")


def split(items: Sequence[T], parts: int) -> list[list[T]]:
    """`items` in at most `parts` (≥ 1) consecutive, non-empty shares whose sizes differ by at most
    one (the first shares take the remainder); together they are `items` in order.

    Raises ValueError when `parts` < 1."""
    if parts < 1:
        raise ValueError(f"parts must be at least 1, not {parts}")
    parts = min(parts, len(items))
    size, extra = divmod(len(items), parts) if parts else (0, 0)
    shares: list[list[T]] = []
    start = 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        shares.append(list(items[start:end]))
        start = end
    return shares


class Counters:
    connected = 0
    beats = 0
    replies = 0
    failures = 0


async def agent(
    url: str,
    credential: str,
    instance_id: str,
    facts: ContainerFacts,
    interval: float,
    delay: float,
    stop: asyncio.Event,
    c: Counters,
    total: int,
) -> None:
    await asyncio.sleep(delay)
    keys_version = ""
    up = False  # only an agent that got in counts out again
    try:
        async with connect(
            url,
            additional_headers={"Authorization": f"Bearer {credential}"},
            compression=None,
            open_timeout=60,  # thousands connecting at once on a busy machine wait their turn
            ping_interval=20,
            ping_timeout=20,
        ) as ws:
            up = True
            c.connected += 1
            if c.connected % 100 == 0 or c.connected == total:
                print(f"connected {c.connected}/{total}", flush=True)
                if c.connected == total:
                    print("all connected", flush=True)

            async def beats() -> None:
                while not stop.is_set():
                    beat = Heartbeat(instance_id=instance_id, state="running", keys_version=keys_version, facts=facts)
                    await ws.send(msgspec.json.encode(HeartbeatMessage(heartbeat=beat)).decode())
                    c.beats += 1
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), interval)

            async def replies() -> None:
                nonlocal keys_version
                async for raw in ws:
                    message = msgspec.json.decode(raw, type=BrokerMessage)
                    if isinstance(message, ReplyMessage):
                        c.replies += 1
                        if message.reply.authorized_keys is not None:
                            keys_version = message.reply.authorized_keys.version

            tasks = [asyncio.create_task(beats()), asyncio.create_task(replies())]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in tasks:
                t.cancel()
            if not stop.is_set():  # the broker ended the channel (a real agent would reconnect): say why
                c.failures += 1
                print(f"agent closed by the broker: {ws.close_code} {ws.close_reason}", flush=True)
    except (OSError, TimeoutError, ConnectionClosed) as exc:
        if not stop.is_set():
            c.failures += 1
            print(f"agent failed: {type(exc).__name__}: {exc}", flush=True)
    finally:
        if up and not stop.is_set():
            c.connected -= 1


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("spec")
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--spread", type=float, default=10.0)
    args = parser.parse_args()
    with open(args.spec) as f:
        spec = json.load(f)
    url = websocket_url(spec["url"], AGENT_CONNECT)
    facts = msgspec.convert(spec["facts"], ContainerFacts)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    c = Counters()
    agents = spec["agents"]
    jitter = random.Random()  # noqa: S311 - spreading connections, not secrets
    tasks = [
        asyncio.create_task(
            agent(
                url,
                a["credential"],
                a["instance_id"],
                facts,
                args.interval,
                jitter.uniform(0, args.spread),
                stop,
                c,
                len(agents),
            )
        )
        for a in agents
    ]

    async def status() -> None:
        while not stop.is_set():
            print(
                f"status connected={c.connected} beats={c.beats} replies={c.replies} failures={c.failures}", flush=True
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 5)

    reporter = asyncio.create_task(status())
    await stop.wait()
    await asyncio.gather(*tasks, return_exceptions=True)
    reporter.cancel()
    print(f"stopped connected={c.connected} beats={c.beats} replies={c.replies} failures={c.failures}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
