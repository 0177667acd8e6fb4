"""This broker as one of several replicas sharing a PostgreSQL database (issue 13): who it is,
where the others reach it, and the secret they prove themselves with.

- Each replica registers its id (`rep_…`, new on every start) and its internal address
  (`--replica-address`, else http://HOST:PORT as it listens) in the `replicas` table and beats
  every BEAT seconds; one silent for longer than LIVE_FOR is gone (killed, cut off), and the
  agent channels it was recorded holding (`agent_channels`) count for nothing. One silent for
  longer than FORGET_AFTER is removed, with those records, by whichever live replica beats
  next; one that was only stalled hears so from its next beat and records its channels again.
- What must be the same on every replica and is no row of the database is derived from the
  encryption key too: the app-origin credentials' key (broker.ports), which a SQLite broker
  keeps in its data dir.
- Replicas reach each other over an internal WebSocket (broker.peering) carrying the
  `Authorization: Bearer …` of a secret every replica derives from the encryption key they all
  have (HKDF-SHA256, RFC 5869, with its own label): nothing else to configure or leak, and the
  key itself never crosses the network. It is compared in constant time.
"""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from broker.store import ReplicaRecord

BEAT = 2.0  # seconds between a replica's beats
LIVE_FOR = 7  # seconds: a replica not seen for longer is gone (three beats missed)
FORGET_AFTER = 60  # seconds: a replica not seen for longer is removed from the registry by the live ones
SECRET_INFO = b"pair broker replica peering v1"  # HKDF's info: this secret and no other
APP_SECRET_INFO = b"pair app-origin credentials v1"


def derive(encryption_key: bytes, info: bytes) -> bytes:
    """32 bytes for the purpose `info` names, derived from the 32-byte encryption key with
    HKDF-SHA256 (RFC 5869): every replica computes the same, and none reveals the key or another."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(encryption_key)


def derive_secret(encryption_key: bytes) -> str:
    """The replicas' shared secret (URL-safe base64 of 32 bytes)."""
    return base64.urlsafe_b64encode(derive(encryption_key, SECRET_INFO)).decode().rstrip("=")


@dataclass(frozen=True)
class Replica:
    """This process among the replicas: its id, its internal address, the shared secret."""

    id: str
    address: str
    secret: str
    started_at: int
    app_secret: bytes = b""  # the app-origin credentials' HMAC key (broker.ports), the same on every replica

    def record(self, now: int) -> ReplicaRecord:
        return ReplicaRecord(self.id, self.address, self.started_at, now)

    def authorization(self) -> str:
        """The Authorization header's value another replica expects from this one."""
        return f"Bearer {self.secret}"

    def admits(self, authorization: str | None) -> bool:
        """True when `authorization` (an Authorization header's value) carries the shared
        secret, compared in constant time."""
        return authorization is not None and hmac.compare_digest(
            authorization.encode("utf-8", "replace"), self.authorization().encode()
        )


def alive(replica: ReplicaRecord, now: int) -> bool:
    """Whether `replica` beat recently enough to count as serving."""
    return replica.seen_at >= now - LIVE_FOR
