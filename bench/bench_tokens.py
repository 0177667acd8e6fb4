"""Token issuance through the API: POST /api/v1/spaces (create a Space and sign its one-hour
token) under `wrk -t2 -c64`, 64 users' sessions in turn, against PyJWT's EdDSA encode of the
same claims in-process (one core, no HTTP, no database)."""

from __future__ import annotations

import secrets
import time

from bench.bench_http import wrk
from bench.harness import Figure, Stats, Target
from bench.world import World, settle

NAME = "token issuance: POST /api/v1/spaces vs in-process EdDSA JWT encode"


def jwt_encode_rate(seconds: float) -> float:
    import jwt
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    now = int(time.time())
    n = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(100):
            claims = {
                "iss": "http://127.0.0.1:8000",
                "aud": "pair-space",
                "sub": "sp_k3v9q2m7x4hd",
                "iat": now,
                "nbf": now,
                "exp": now + 3600,
                "jti": secrets.token_urlsafe(16),
            }
            jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": "k1"})
        n += 100
    return n / elapsed


def run(world: World) -> list[Figure]:
    p = world.progress
    url = world.url + "/api/v1/spaces"
    sessions = world.seeded.issuer_sessions
    seconds = 3.0 if world.quick else 8.0
    p.note("warm-up")
    wrk(url, 2, method="POST", body="{}", tokens=sessions)
    settle(world.broker_pid())
    jwt_encode_rate(1)
    ours, base = [], []
    for r in range(3):
        p.note(f"round {r + 1}/3: POST /api/v1/spaces ({seconds:g} s)")
        ours.append(wrk(url, seconds, method="POST", body="{}", tokens=sessions).rps)
        settle(world.broker_pid())
        p.note(f"round {r + 1}/3: jwt.encode in-process")
        base.append(jwt_encode_rate(min(seconds, 3.0)))
    fig = Figure(
        "tokens",
        "token issuance POST /api/v1/spaces",
        "tokens/s",
        Stats(ours),
        Stats(base),
        "in-process PyJWT EdDSA encode",
        Target("ratio>=", 0.2),
    )
    p.result(fig)
    return [fig]
