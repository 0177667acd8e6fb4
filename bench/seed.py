"""Seed a broker data dir in-process, through broker.accounts / broker.spaces / the store, before
`pair-broker serve` opens it: 1,000 users with an SSH key each, 10,000 Spaces shared two ways,
1,000 of them bootstrapped (an agent credential each), sessions for the HTTP benchmarks.

alice sees exactly 10 Spaces (she owns 7, 3 are shared with her) among the 10,000.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pair.api import models as m

N_USERS = 1000
N_SPACES = 10_000
N_AGENTS = 1000
N_ISSUERS = 64  # users whose sessions the token-issuance benchmark rotates through
ALICE = "alice@example.com"
ALICE_OWNS, ALICE_SHARED = 7, 3


@dataclass
class Agent:
    space_id: str
    credential: str
    instance_id: str
    owner: str


@dataclass
class Seeded:
    data_dir: Path
    seconds: float
    alice_key_file: Path
    alice_session: str
    issuer_sessions: list[str]
    agents: list[Agent]
    facts_json: str  # ContainerFacts as an agent sends them
    relay_agent: Agent  # a bootstrapped Space outside the 1,000, for the relay benchmark
    relay_session: str  # its owner's session
    keys_version: dict[str, str] = field(default_factory=dict)  # space_id -> current keys version
    users: dict[str, str] = field(default_factory=dict)  # email -> auth key


def ssh_public_key(comment: str) -> str:
    raw = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
    return f"{raw.decode()} {comment}"


def container_facts(i: int) -> m.ContainerFacts:

    return m.ContainerFacts(
        hostname=f"codespace-{i:04d}",
        platform="codespaces",
        cpus=4,
        memory_bytes=16 * 2**30,
        disk_bytes=32 * 2**30,
        login_user="root",
        host_keys=[ssh_public_key("").strip()],
        pair_version="0.1.0",
    )


async def _seed(
    data_dir: Path, url: str, rng: random.Random, database: str, encryption_key: str, n_agents: int
) -> Seeded:
    import msgspec

    from broker import accounts, snapshots, spaces
    from broker.agents import bootstrap
    from broker.context import open_context
    from broker.settings import Settings
    from pair.api import models as m

    settings = Settings(data_dir=data_dir, public_url=url, database=database, encryption_key=encryption_key)
    ctx = await open_context(settings, create=True)
    try:
        users = []
        keys: dict[str, str] = {}
        for i in range(N_USERS):
            email = ALICE if i == 0 else f"user{i:04d}@example.com"
            user, key = await accounts.create_user(ctx, email, actor="bench-seed")
            await accounts.add_ssh_key(ctx, user, ssh_public_key(email))
            users.append(user)
            keys[email] = key
        alice, others = users[0], users[1:]

        def shares(exclude: set[str], n: int = 2) -> list[str]:
            picked: list[str] = []
            while len(picked) < n:
                u = rng.choice(others)
                if u.email not in exclude and u.email not in picked:
                    picked.append(u.email)
            return picked

        tokens: list[tuple[str, str, str]] = []  # (space_id, token, owner) of Spaces not alice's, for agents
        # alice's 7, then 3 owned by user0001 and shared with her, then 10 each for the rest.
        for _ in range(ALICE_OWNS):
            await spaces.authorize(ctx, alice, m.AuthorizeRequest(share_with=shares({alice.email})))
        owner_plan = [(others[0], 13)] + [(u, 10) for u in others[1:]]
        assert ALICE_OWNS + sum(n for _, n in owner_plan) == N_SPACES
        for owner, count in owner_plan:
            for j in range(count):
                with_alice = owner is others[0] and j < ALICE_SHARED
                share_with = shares({owner.email}, 1 if with_alice else 2) + ([ALICE] if with_alice else [])
                issued = await spaces.authorize(ctx, owner, m.AuthorizeRequest(share_with=share_with))
                if j < 2 and not with_alice:
                    tokens.append((issued.space.id, issued.token, owner.email))
        # More agents than the plan's two per owner: further Spaces, owned in turn by everyone but alice.
        for k in range(max(0, n_agents + 1 - len(tokens))):
            owner = others[k % len(others)]
            issued = await spaces.authorize(ctx, owner, m.AuthorizeRequest(share_with=shares({owner.email})))
            tokens.append((issued.space.id, issued.token, owner.email))
        agents = []
        facts_json = ""
        for i, (space_id, token, owner_email) in enumerate(tokens[: n_agents + 1]):
            facts = container_facts(i)
            instance_id = "inst_" + secrets.token_hex(16)
            reg = await bootstrap(ctx, m.BootstrapRequest(token=token, instance_id=instance_id, facts=facts))
            agents.append(Agent(space_id, reg.agent_credential, instance_id, owner_email))
            if i == 0:
                facts_json = msgspec.json.encode(facts).decode()
        versions = {}
        for a in agents[:4]:
            space = await ctx.store.space(a.space_id)
            assert space is not None
            versions[a.space_id] = (await snapshots.authorized_keys(ctx, space)).version
        alice_session, _, _ = await accounts.login(ctx, ALICE, keys[ALICE], kind="bench")
        relay = agents.pop()  # one more bootstrapped Space, for the relay benchmark's real agent
        relay_session, _, _ = await accounts.login(ctx, relay.owner, keys[relay.owner], kind="bench")
        issuers = [(await accounts.login(ctx, u.email, keys[u.email], kind="bench"))[0] for u in others[:N_ISSUERS]]
        assert len(await ctx.store.visible_spaces(alice.id)) == ALICE_OWNS + ALICE_SHARED
    finally:
        await ctx.close()
    key_file = data_dir.parent / "alice.key"
    key_file.write_text(keys[ALICE] + "\n")
    key_file.chmod(0o600)
    return Seeded(
        data_dir, 0.0, key_file, alice_session, issuers, agents, facts_json, relay, relay_session, versions, keys
    )


def seed(
    data_dir: Path,
    url: str = "http://127.0.0.1:8000",
    rng_seed: int = 1,
    *,
    database: str = "",
    encryption_key: str = "",
    agents: int = N_AGENTS,
) -> Seeded:
    """Seed the SQLite database in `data_dir`, or the PostgreSQL `database` (a postgresql:// URL,
    migrated or empty; its signing keys sealed with `encryption_key`, base64 of 32 bytes), with
    `agents` agent credentials (more than the plan's 1,000: Spaces added beyond the 10,000)."""
    import time

    start = time.monotonic()
    rng = random.Random(rng_seed)  # noqa: S311 - reproducible test data, not secrets
    result = asyncio.run(_seed(data_dir, url, rng, database, encryption_key, agents))
    result.seconds = time.monotonic() - start
    return result


if __name__ == "__main__":
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        s = seed(Path(tmp) / "data")
        print(f"seeded in {s.seconds:.1f} s: {len(s.agents)} agents", file=sys.stderr)
