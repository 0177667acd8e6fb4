"""Replicas on PostgreSQL (issue 13) next to a SQLite broker, on the same data: a SQLite data dir
seeded as for the other benchmarks but with 10,000 agent credentials, moved into a PostgreSQL
server of the suite's own with `pair-broker migrate --from … --to …` (as operators move it).

Throughput, rounds interleaved (SQLite, PG 1 replica, PG 2 replicas; three times): token issuance
(POST /api/v1/spaces, 64 users' sessions in turn) and the HTTP heartbeat, each under wrk with 2
threads and 64 connections in all. With two replicas the load generator spreads over them itself
(one `wrk -t1 -c32` per replica, run together) rather than through nginx: on these 2 cores a
balancer would be a third process taking the CPU the replicas are measured on, and what it costs
is nginx's figure, not ours.

Then agents on one PG replica, as bench_agents does on SQLite: the broker's CPU (mean cores over
5-second windows) and RSS with 1,000 agents' control channels heartbeating every 10 s, and with
10,000 (goal: ≤ 0.5 core, ≤ 600 MB), against the same replica idle just before. The agents run
in helper processes (bench/agents_load.py; several for 10,000) whose CPU is not the broker's:
only the broker's pid is sampled. PostgreSQL's own CPU over the same windows is kept beside.
"""

from __future__ import annotations

import base64
import json
import os
import re
import resource
import signal
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.agents_load import split
from bench.bench_agents import WINDOW, _status, sample
from bench.bench_http import CONNECTIONS, wrk
from bench.harness import Figure, Stats, Target
from bench.seed import Seeded, seed
from bench.world import World, cpu_seconds, settle, tree_cpu_seconds
from tests.support.broker import RealBroker, real_broker
from tests.support.container import free_port
from tests.support.processes import Output, clean_env, executable

NAME = "replicas on PostgreSQL: tokens and heartbeats vs SQLite; 1,000 and 10,000 agents on one replica"
MANY = 10_000  # agents on one replica
FEW = 1000
INTERVAL = 10.0  # the agents' heartbeat interval (the broker's default)
HELPERS = 4  # processes sharing the 10,000 agents


def _postmaster_pid(world: World) -> int:
    return int((world.postgres.root / "data" / "postmaster.pid").read_text().split()[0])


def _start_replicas(world: World, database: str, key: str, count: int) -> list[RealBroker]:
    """`count` `pair-broker serve` on `database`, as operators run them: the same encryption key
    and public URL (the first replica's address), a data dir each."""
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    brokers = []
    for i in range(count):
        world.progress.note(f"starting replica {i + 1}/{count} on PostgreSQL")
        brokers.append(
            world.stack.enter_context(
                real_broker(
                    world.tmp / f"replica-{i + 1}",
                    "--public-url",
                    public,
                    port=port if i == 0 else 0,
                    database=database,
                    env={"PAIR_BROKER_ENCRYPTION_KEY": key},
                    fresh=False,
                )
            )
        )
    return brokers


def _spread(urls: list[str], seconds: float, **case: object) -> float:
    """wrk over `urls` at once, the 64 connections shared among them; requests/s in all."""
    if len(urls) == 1:
        return wrk(urls[0], seconds, **case).rps  # type: ignore[arg-type]
    each = CONNECTIONS // len(urls)
    with ThreadPoolExecutor(len(urls)) as pool:
        runs = list(pool.map(lambda u: wrk(u, seconds, threads=1, connections=each, **case), urls))  # type: ignore[arg-type]
    return sum(r.rps for r in runs)


def _beat(seeded: Seeded) -> tuple[str, str]:
    """(agent credential, heartbeat body) of the seeded agent bench_http heartbeats as."""
    agent = seeded.agents[0]
    body = (
        f'{{"instance_id":"{agent.instance_id}","state":"running",'
        f'"keys_version":"{seeded.keys_version[agent.space_id]}","facts":{seeded.facts_json}}}'
    )
    return agent.credential, body


def throughput(world: World, seeded: Seeded, sqlite: RealBroker, replicas: list[RealBroker]) -> list[Figure]:
    """The same data (and sessions, and agent) on SQLite and on PostgreSQL."""
    p = world.progress
    setups = {
        "sqlite": ([sqlite.url], [sqlite.proc.pid]),
        "pg1": ([replicas[0].url], [replicas[0].proc.pid]),
        "pg2": ([r.url for r in replicas], [r.proc.pid for r in replicas]),
    }
    seconds = 3.0 if world.quick else 5.0
    rounds = 3

    def case(kind: str) -> tuple[str, dict[str, object]]:
        if kind == "tokens":
            return "/api/v1/spaces", {"method": "POST", "body": "{}", "tokens": seeded.issuer_sessions}
        credential, body = _beat(seeded)
        return "/api/v1/agent/heartbeat", {"method": "POST", "body": body, "tokens": [credential]}

    results: dict[tuple[str, str], list[float]] = {}
    for kind in ("tokens", "heartbeat"):
        for name, (urls, pids) in setups.items():
            path, options = case(kind)
            p.note(f"warm-up: {kind} on {name}")
            _spread([u + path for u in urls], 2, **options)
            for pid in pids:
                settle(pid)
        for r in range(rounds):
            for name, (urls, pids) in setups.items():
                path, options = case(kind)
                p.note(f"round {r + 1}/{rounds}: {kind} on {name} ({seconds:g} s)")
                results.setdefault((kind, name), []).append(_spread([u + path for u in urls], seconds, **options))
                for pid in pids:
                    settle(pid)  # one setup's backlog must not land in the next one's figure

    figures = []
    for kind, label, unit in (
        ("tokens", "token issuance POST /api/v1/spaces", "tokens/s"),
        ("heartbeat", "heartbeat POST /api/v1/agent/heartbeat", "req/s"),
    ):
        for name, what in (("pg1", "PostgreSQL, 1 replica"), ("pg2", "PostgreSQL, 2 replicas")):
            figures.append(
                Figure(
                    f"replicas_{kind}_{name}",
                    f"{label}: {what}",
                    unit,
                    Stats(results[(kind, name)]),
                    Stats(results[(kind, "sqlite")]),
                    "SQLite, 1 broker",
                    Target("report"),
                )
            )
    for f in figures:
        p.result(f)
    return figures


def _connecting(
    world: World, helpers: list[tuple[subprocess.Popen[str], Output]], count: int, deadline: float
) -> tuple[int, float]:
    """Wait until every agent is connected (or gave up), or until `deadline` (time.monotonic());
    returns (how many are connected, seconds waited: the helpers have just started)."""
    started = time.monotonic()
    while True:
        status = [_status(o.text()) for _, o in helpers]
        up = sum(s["connected"] for s in status)
        if up + sum(s["failures"] for s in status) >= count or time.monotonic() > deadline:
            return up, time.monotonic() - started
        world.progress.note(f"{up:,} of {count:,} agents connected")
        time.sleep(1)


def _agents_spec(world: World, url: str, pg: Seeded, agents: int, parts: int, name: str) -> list[Path]:
    files = []
    for i, share in enumerate(split(pg.agents[:agents], parts)):
        spec = world.tmp / f"{name}-{i + 1}.json"
        spec.write_text(
            json.dumps(
                {
                    "url": url,
                    "facts": json.loads(pg.facts_json),
                    "agents": [{"credential": a.credential, "instance_id": a.instance_id} for a in share],
                }
            )
        )
        files.append(spec)
    return files


def agents(world: World, pg: Seeded, broker: RealBroker, count: int, parts: int) -> list[Figure]:
    """`count` agents (in `parts` helper processes) on `broker`: its CPU and RSS, busy vs idle;
    for the 10,000 also how many got in and stayed (the others measured with what did)."""
    p = world.progress
    pid = broker.proc.pid
    postmaster = _postmaster_pid(world)
    settle(pid)
    idle_cpu, idle_rss = sample(world, pid, 2 if world.quick else 3, "idle replica")
    spread = float(min(40, max(int(INTERVAL), count // 300)))  # connections arrive over a while, as after a restart
    helpers: list[tuple[subprocess.Popen[str], Output]] = []
    for spec in _agents_spec(world, broker.url, pg, count, parts, f"agents-{count}"):
        proc, output, _ = world.helper(
            "agents_load", str(spec), "--interval", str(INTERVAL), "--spread", str(spread), ready=r"^status"
        )
        helpers.append((proc, output))
    p.note(f"connecting {count:,} agents over {spread:.0f} s ({len(helpers)} processes)")
    up, took_to_connect = _connecting(world, helpers, count, time.monotonic() + spread + (60 if world.quick else 120))
    time.sleep(WINDOW)  # let the connection burst pass
    windows = 4 if world.quick else 8
    before = [_status(o.text()) for _, o in helpers]
    pg0, load0, t0 = tree_cpu_seconds(postmaster), sum(cpu_seconds(h.pid) for h, _ in helpers), time.monotonic()
    busy_cpu, busy_rss = sample(world, pid, windows, f"{count:,} agents")
    took = time.monotonic() - t0
    pg_cores = (tree_cpu_seconds(postmaster) - pg0) / took
    load_cores = (sum(cpu_seconds(h.pid) for h, _ in helpers) - load0) / took
    after = [_status(o.text()) for _, o in helpers]
    for proc, _ in helpers:
        proc.send_signal(signal.SIGTERM)
    for proc, _ in helpers:
        proc.wait(60)
    connected = sum(s["connected"] for s in after)
    failures = sum(s["failures"] for s in after)
    if count < MANY and (failures or connected < count):
        tail = "\n".join(o.text()[-1500:] for _, o in helpers)
        raise RuntimeError(f"agents dropped during the run: {connected} connected, {failures} failures\n{tail}")
    ended = re.compile(r"^agent (?:failed|closed by the broker): (.*)$", re.M)
    endings = Counter(m.group(1) for _, o in helpers for m in ended.finditer(o.text()))
    replies = sum(a["replies"] - b["replies"] for a, b in zip(after, before, strict=True))
    busy, idle = Stats(busy_cpu), Stats(idle_cpu)
    extra = {
        "agents": count,
        "connected": connected,
        "connected_before_measuring": up,
        "seconds_connecting": took_to_connect,
        "channels_opened_per_second": up / took_to_connect,
        "failed_to_connect_or_dropped": failures,
        "why": dict(endings.most_common(5)),
        "helper_processes": len(helpers),
        "heartbeat_replies": replies,
        "expected_replies": count * windows * WINDOW / INTERVAL,
        "cores_per_1000_agents": (busy.median - idle.median) * 1000 / count,
        "mb_per_1000_agents": (Stats(busy_rss).median - Stats(idle_rss).median) * 1000 / count,
        "postgresql_cores": pg_cores,
        "load_generator_cores": load_cores,
    }
    goal = count >= MANY
    figures = [
        Figure(
            f"replicas_agents{count // 1000}k_cpu",
            f"{count:,} agents heartbeating (10 s) on one PG replica: broker CPU",
            "cores",
            busy,
            idle,
            "idle replica",
            Target("<=", 0.5 if goal else 0.25),
            extra=extra,
        ),
        Figure(
            f"replicas_agents{count // 1000}k_rss",
            f"{count:,} agents heartbeating (10 s) on one PG replica: broker RSS",
            "MB",
            Stats(busy_rss),
            Stats(idle_rss),
            "idle replica",
            Target("<=", 600 if goal else 300),
        ),
    ]
    if goal:  # what the CPU and RSS above held: all of them, or as many as got in and stayed
        figures.append(
            Figure(
                f"replicas_agents{count // 1000}k_connected",
                f"{count:,} agents on one PG replica: channels connected throughout",
                "agents",
                Stats([connected]),
                None,
                "",
                Target(">=", count),
                extra={"failures": failures, "why": dict(endings.most_common(5))},
            )
        )
        figures.append(
            Figure(
                f"replicas_agents{count // 1000}k_connect_rate",
                f"{count:,} agents on one PG replica: control channels opened",
                "agents/s",
                Stats([up / took_to_connect]),
                None,
                "",
                Target("report"),
                notes=f"{up:,} connected in {took_to_connect:.0f} s, connections started over {spread:.0f} s",
            )
        )
    for f in figures:
        p.result(f)
    p.say(
        f"  ({connected:,} of {count:,} connected ({up / took_to_connect:.0f}/s); {replies:,} heartbeat replies, "
        f"{extra['expected_replies']:,.0f} expected; per 1,000 agents "
        f"{extra['cores_per_1000_agents']:.3f} cores, {extra['mb_per_1000_agents']:.0f} MB; PostgreSQL "
        f"{pg_cores:.2f} cores; the agents' processes {load_cores:.2f} cores)"
    )
    return figures


def run(world: World) -> list[Figure]:
    p = world.progress
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < MANY + 1000:
        raise RuntimeError(
            f"{MANY:,} agents need {MANY + 1000:,} open files in the broker; the limit is {soft:,}. "
            "Run the benchmark as root (it raises the limit) or raise `ulimit -n`."
        )
    p.note(f"seeding a SQLite data dir: 1,000 users, {MANY:,} agents")
    seeded = seed(world.tmp / "replicas-sqlite", agents=MANY)
    p.say(f"  seeded 1,000 users, {MANY:,} agents in {seeded.seconds:.1f} s")
    # The same data on PostgreSQL, moved as operators move it (docs/operations.md).
    key = base64.b64encode(os.urandom(32)).decode()
    database = world.postgres.create_database(migrated=False)
    p.note("pair-broker migrate --from the SQLite database --to PostgreSQL")
    started = time.monotonic()
    moved = subprocess.run(
        [
            executable("pair-broker"),
            "migrate",
            "--from",
            f"sqlite:///{seeded.data_dir / 'broker.db'}",
            "--to",
            database,
        ],
        env=clean_env(PAIR_BROKER_ENCRYPTION_KEY=key),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if moved.returncode != 0:
        raise RuntimeError(f"pair-broker migrate failed: {moved.stdout[-1500:]} {moved.stderr[-1500:]}")
    p.say(f"  moved it into PostgreSQL in {time.monotonic() - started:.1f} s")
    p.note("starting pair-broker serve on SQLite")
    sqlite = world.stack.enter_context(real_broker(seeded.data_dir))
    replicas = _start_replicas(world, database, key, 2)
    figures = throughput(world, seeded, sqlite, replicas)
    figures += agents(world, seeded, replicas[0], FEW, 1)
    figures += agents(world, seeded, replicas[0], MANY, HELPERS)
    return figures
