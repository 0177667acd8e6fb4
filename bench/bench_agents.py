"""1,000 connected agents heartbeating at the real interval (10 s): the broker's CPU (mean cores
over 5-second windows, from /proc/PID/stat) and RSS (/proc/PID/status) over ~60 s, against the
same broker process idle just before. The agents (bench/agents_load.py) are one asyncio process."""

from __future__ import annotations

import json
import re
import signal
import time

from bench.harness import Figure, Stats, Target
from bench.world import World, cpu_window, rss_mb

NAME = "1,000 agents heartbeating every 10 s: broker CPU and RSS vs idle"
WINDOW = 5.0


def sample(world: World, pid: int, windows: int, what: str) -> tuple[list[float], list[float]]:
    cpu, rss = [], []
    for i in range(windows):
        world.progress.note(f"{what}: window {i + 1}/{windows} ({WINDOW:g} s)")
        with cpu_window(pid) as out:
            time.sleep(WINDOW)
        cpu += out
        rss.append(rss_mb(pid))
    return cpu, rss


def run(world: World) -> list[Figure]:
    p = world.progress
    seeded = world.seeded
    pid = world.broker_pid()
    interval = 10.0
    spec = world.tmp / "agents.json"
    spec.write_text(
        json.dumps(
            {
                "url": world.url,
                "facts": json.loads(seeded.facts_json),
                "agents": [{"credential": a.credential, "instance_id": a.instance_id} for a in seeded.agents],
            }
        )
    )
    idle_cpu, idle_rss = sample(world, pid, 2 if world.quick else 3, "idle broker")

    spread = 5.0 if world.quick else interval  # connections arrive spread over one interval, as in life
    proc, output, _ = world.helper(
        "agents_load", str(spec), "--interval", str(interval), "--spread", str(spread), ready=r"^status"
    )
    p.note(f"connecting {len(seeded.agents)} agents over {spread:g} s")
    output.wait_for(r"^all connected", timeout=120)
    time.sleep(WINDOW)  # let the connection burst pass
    windows = 4 if world.quick else 12
    before = _status(output.text())
    busy_cpu, busy_rss = sample(world, pid, windows, f"{len(seeded.agents)} agents")
    after = _status(output.text())
    replies = after["replies"] - before["replies"]
    expected = len(seeded.agents) * windows * WINDOW / interval
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    if after["failures"] or after["connected"] < len(seeded.agents):
        raise RuntimeError(f"agents dropped during the run: {after}\n{output.text()[-3000:]}")
    extra = {
        "heartbeat_replies": replies,
        "expected_replies": expected,
        "window_seconds": WINDOW,
        "agents": len(seeded.agents),
    }
    figures = [
        Figure(
            "agents_cpu",
            "1,000 agents heartbeating (10 s): broker CPU",
            "cores",
            Stats(busy_cpu),
            Stats(idle_cpu),
            "idle broker",
            Target("<=", 0.25),
            extra=extra,
        ),
        Figure(
            "agents_rss",
            "1,000 agents heartbeating (10 s): broker RSS",
            "MB",
            Stats(busy_rss),
            Stats(idle_rss),
            "idle broker",
            Target("<=", 300),
        ),
    ]
    for f in figures:
        p.result(f)
    p.say(f"  ({replies} heartbeat replies in {windows * WINDOW:g} s; {expected:.0f} expected)")
    return figures


def _status(text: str) -> dict[str, int]:
    lines = [x for x in text.splitlines() if x.startswith("status ")]
    if not lines:
        return {"connected": 0, "beats": 0, "replies": 0, "failures": 0}
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", lines[-1])}
