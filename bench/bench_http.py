"""HTTP throughput and tail latency under `wrk -t2 -c64`: the agent heartbeat, the Space list of a
user with 10 Spaces among 10,000, and session authentication (GET /me), against a bare Starlette
/hello served the same way. Rounds are interleaved (hello, echo, heartbeat, list, me; three times)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass

from bench.harness import BENCH_DIR, Figure, Stats, Target
from bench.world import World, settle

NAME = "HTTP: heartbeat, Space list, session auth vs bare Starlette (wrk -t2 -c64)"
LUA = BENCH_DIR / "wrk" / "bench.lua"
THREADS, CONNECTIONS = 2, 64
FIXED_RATE = 2000  # req/s: well below what any of these endpoints serves, so no queue builds up


@dataclass
class WrkRun:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int]


def wrk(
    url: str,
    seconds: float,
    *,
    method: str = "GET",
    body: str = "",
    tokens: list[str] | None = None,
    rate: float = 0,
    threads: int = THREADS,
    connections: int = CONNECTIONS,
) -> WrkRun:
    """`wrk -t2 -c64` (or `threads`, `connections`) against `url`: as fast as the server answers,
    or, with `rate`, about `rate` requests a second in all (each connection pauses between its
    requests)."""
    program = shutil.which("wrk")
    if program is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk; `make bench` does it as root)")
    env = {
        **os.environ,
        "BENCH_METHOD": method,
        "BENCH_BODY": body,
        "BENCH_TOKENS": ",".join(tokens or []),
        "BENCH_RATE": f"{rate:g}",
        "BENCH_CONNECTIONS": str(connections),
    }
    out = subprocess.run(
        [program, f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "-s", str(LUA), url],
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    line = next((x for x in out.stdout.splitlines() if x.startswith("BENCHJSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout[-1500:]} {out.stderr[-1500:]}")
    data = json.loads(line.split(" ", 1)[1])
    errors = {k: data[k] for k in ("connect", "read", "write", "status", "timeout") if data[k]}
    if errors.get("status") or errors.get("connect") or errors.get("timeout"):
        raise RuntimeError(f"wrk {method} {url}: errors {errors} of {data['requests']} requests")
    return WrkRun(data["requests"] / (data["duration_us"] / 1e6), data["p50_us"] / 1000, data["p99_us"] / 1000, errors)


def hello_server(world: World) -> tuple[str, int]:
    """The baseline server's /hello URL and pid (started once, stopped with the suite)."""
    if not hasattr(world, "_hello"):
        proc, _, match = world.helper("hello_server", ready=r"listening on (http://\S+)")
        world._hello = (match.group(1) + "/hello", proc.pid)  # type: ignore[attr-defined]
    return world._hello  # type: ignore[attr-defined,no-any-return]


def run(world: World) -> list[Figure]:
    p = world.progress
    seeded = world.seeded
    broker = world.url
    agent = seeded.agents[0]
    beat = (
        f'{{"instance_id":"{agent.instance_id}","state":"running",'
        f'"keys_version":"{seeded.keys_version[agent.space_id]}","facts":{seeded.facts_json}}}'
    )
    hello_url, hello_pid = hello_server(world)
    pids = {
        "hello": hello_pid,
        "echo": hello_pid,
        "heartbeat": world.broker_pid(),
        "list": world.broker_pid(),
        "me": world.broker_pid(),
    }
    cases = {
        "hello": dict(url=hello_url),
        "echo": dict(url=hello_url.replace("/hello", "/echo"), method="POST", body=beat),
        "heartbeat": dict(url=broker + "/api/v1/agent/heartbeat", method="POST", body=beat, tokens=[agent.credential]),
        "list": dict(url=broker + "/api/v1/spaces", tokens=[seeded.alice_session]),
        "me": dict(url=broker + "/api/v1/me", tokens=[seeded.alice_session]),
    }
    seconds = 3.0 if world.quick else 10.0
    rounds = 3
    for name, case in cases.items():
        p.note(f"warm-up {name}")
        wrk(seconds=2, **case)  # type: ignore[arg-type]
        settle(pids[name])
    results: dict[str, list[WrkRun]] = {name: [] for name in cases}
    for r in range(rounds):
        for name, case in cases.items():
            p.note(f"round {r + 1}/{rounds}: {name} ({seconds:g} s)")
            results[name].append(wrk(seconds=seconds, **case))  # type: ignore[arg-type]
            p.note(f"round {r + 1}/{rounds}: {name}: waiting for the server to drain its queue")
            settle(pids[name])  # an overloaded endpoint's backlog must not land in the next one's latency

    # Tail latency proper: at a fixed rate below saturation, where p99 shows stalls rather than the
    # queue that any saturated single-process server builds (see docs/performance.md).
    fixed_seconds = 3.0 if world.quick else 8.0
    fixed: dict[str, list[WrkRun]] = {name: [] for name in ("hello", "heartbeat", "list", "me")}
    for r in range(2):
        for name in fixed:
            p.note(f"fixed rate {r + 1}/2: {name} at {FIXED_RATE:,} req/s ({fixed_seconds:g} s)")
            fixed[name].append(wrk(seconds=fixed_seconds, rate=FIXED_RATE, **cases[name]))  # type: ignore[arg-type]
            settle(pids[name])

    def rps(name: str) -> Stats:
        return Stats([x.rps for x in results[name]])

    def p99(name: str) -> Stats:
        return Stats([x.p99_ms for x in results[name]])

    figures = []
    for key, label, target in (
        ("heartbeat", "heartbeat POST /api/v1/agent/heartbeat", Target("ratio>=", 0.5)),
        ("list", "GET /api/v1/spaces (10 of 10,000 Spaces)", Target("ratio>=", 0.35)),
        ("me", "session auth GET /api/v1/me", Target("report")),
    ):
        extra = {"p50_ms": [x.p50_ms for x in results[key]], "socket_errors": [x.errors for x in results[key]]}
        figures.append(
            Figure(
                f"http_{key}_rps",
                f"{label}: req/s",
                "req/s",
                rps(key),
                rps("hello"),
                "Starlette `/hello`",
                target,
                extra=extra,
            )
        )
        figures.append(
            Figure(
                f"http_{key}_p99",
                f"{label}: p99",
                "ms",
                p99(key),
                p99("hello"),
                "Starlette `/hello`",
                Target("ratio<=", 3.0),
            )
        )
    for key, label in (
        ("heartbeat", "heartbeat POST /api/v1/agent/heartbeat"),
        ("list", "GET /api/v1/spaces (10 of 10,000 Spaces)"),
        ("me", "session auth GET /api/v1/me"),
    ):
        figures.append(
            Figure(
                f"http_{key}_p99_fixed",
                f"{label}: p99 at {FIXED_RATE:,} req/s",
                "ms",
                Stats([x.p99_ms for x in fixed[key]]),
                Stats([x.p99_ms for x in fixed["hello"]]),
                f"Starlette `/hello` at {FIXED_RATE:,} req/s",
                Target("report"),
                extra={"rps": [x.rps for x in fixed[key]]},
            )
        )
    # Not a target: how far a bare POST that reads the heartbeat's body gets, to read the heartbeat by.
    figures.append(
        Figure(
            "http_echo_rps",
            "(reference) bare Starlette POST /echo, heartbeat's body: req/s",
            "req/s",
            rps("echo"),
            rps("hello"),
            "Starlette `/hello`",
            Target("report"),
        )
    )
    figures.append(
        Figure(
            "http_echo_p99",
            "(reference) bare Starlette POST /echo, heartbeat's body: p99",
            "ms",
            p99("echo"),
            p99("hello"),
            "Starlette `/hello`",
            Target("report"),
        )
    )
    for f in figures:
        p.result(f)
    return figures
